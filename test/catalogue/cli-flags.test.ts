import { runRows } from './run-rows.js';

// The catalogue's CLI rows: each spawns `abp` once or twice.
runRows('cli-flags');
