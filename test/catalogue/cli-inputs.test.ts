import { runRows } from './run-rows.js';

// The catalogue's enumerator, worker and sync rows that go in through a spawned `abp`.
runRows('cli-inputs');
