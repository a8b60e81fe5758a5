export { createApp, VERSION, type App } from './app.js';
export { resolveConfig, type AbpConfig } from './config.js';
export { AbpError, type ErrorCode } from './domain/errors.js';
export { JobSpec, parseJobSpec, type JobSpecInput } from './domain/job-spec.js';
export { JOB_STATES, UNIT_STATES, JOB_MOVES, UNIT_MOVES, type JobState, type UnitState } from './domain/states.js';
export type { Enumerator, Item } from './contracts/enumerator.js';
export type { Worker, UnitInput, UnitOutcome, RunContext, WorkerHealth } from './contracts/worker.js';
export { Orchestrator } from './orchestrator/orchestrator.js';
export { JobExecutor } from './executor/job-executor.js';
