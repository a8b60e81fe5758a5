import { afterEach, describe, expect, it } from 'vitest';
import { createApp, type App } from '../../src/app.js';
import { resolveConfig } from '../../src/config.js';
import { Sandbox } from '../helpers/cli.js';
import { runningJob } from '../helpers/store.js';

let sb: Sandbox;
let app: App | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
  await sb.cleanup();
});

describe('an executor that goes idle', () => {
  it('runs a job started at the moment it decided to exit, when the launcher still saw it alive', async () => {
    sb = new Sandbox();
    app = await createApp(resolveConfig(sb.env));
    const { repo, config } = app;
    // onWork: after each pass that found work (abp executor releases the optimizing compiler at the first).
    const passes: string[] = [];
    const executor = app.createExecutor({ idleExitMs: 100 }, { onWork: () => passes.push(jobId === undefined ? 'before the job' : 'with the job') });

    // Hold the executor at the instant it leaves the registry, and start a job there:
    // the launcher looks at the live executors, finds this one, and launches none.
    const leave = repo.unregisterExecutor.bind(repo);
    let jobId: number | undefined;
    let launcherSawLive = -1;
    repo.unregisterExecutor = async (id: string) => {
      if (jobId === undefined) {
        jobId = (await runningJob(repo, 4, 2)).id;
        launcherSawLive = (await repo.liveExecutors(config.heartbeatMs * 3)).length;
      }
      return leave(id);
    };

    await executor.run();
    expect(jobId).toBeDefined();
    expect(launcherSawLive).toBe(1);
    // The executor looked once more after leaving, found the job, and ran it before exiting.
    const job = await repo.requireJob(jobId as number);
    expect(job.status).toBe('COMPLETED');
    expect(await sb.counts(jobId as number)).toMatchObject({ succeeded: 4, pending: 0, running: 0 });
    expect(await repo.liveExecutors(config.heartbeatMs * 3)).toEqual([]);
    // Idle on an empty store it never called onWork; running the job, it did.
    expect(passes.length).toBeGreaterThan(0);
    expect(new Set(passes)).toEqual(new Set(['with the job']));
  });
});
