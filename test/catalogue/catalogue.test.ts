import { runRows } from './run-rows.js';

// The catalogue's rows served by long-lived processes: `abp serve`, `abp mcp`, and an
// executor with a mock LLM API. The rows that spawn `abp` are in cli-flags.test.ts
// and cli-inputs.test.ts, so that the files can run side by side.
runRows('http');
runRows('mcp');
runRows('worker');
