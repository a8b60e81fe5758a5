import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ROOT, Sandbox, sleep } from '../helpers/cli.js';
import { launchChromium, type Browser } from '../helpers/chromium.js';
import { TEST_BACKEND } from '../helpers/postgres.js';
import { call, slowJob, startServe, waitForStatus, type Served } from '../helpers/serve.js';

/** Screenshots land here (gitignored) for a person to look at after the run. */
const ARTIFACTS = join(ROOT, 'test-artifacts', 'dashboard');

let sb: Sandbox;
let srv: Served;
let browser: Browser | undefined;
let context: BrowserContext;
let page: Page;

const shot = (name: string) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });

const createJob = async (spec: Record<string, unknown>) => {
  const r = await call(srv.url, '/jobs', { method: 'POST', body: spec });
  expect(r.status, r.text).toBe(201);
  return r.json.job_id as number;
};

const stateOnPage = () => page.locator('main [data-testid="state"]').first().textContent();

// The dashboard reads the same API on either store; one browser run is enough.
describe.skipIf(TEST_BACKEND === 'postgres')('dashboard in Chromium', () => {
  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    sb = new Sandbox();
    srv = await startServe(sb);
    browser = await launchChromium();
    ({ context, page } = browser);
    // The one-time link that `abp serve` printed signs this browser in.
    const landed = await page.goto(srv.login);
    expect(landed?.status()).toBe(200);
    expect(new URL(page.url()).pathname).toBe('/');
    expect((await context.cookies()).find((c) => c.name === `abp_session_${srv.port}`)).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
    // The page took its key from the fragment into its own storage, and off the address bar.
    expect(new URL(page.url()).hash).toBe('#/');
    expect(await page.evaluate(() => localStorage.getItem('abp_session_key'))).toMatch(/^[A-Za-z0-9_-]{20,}$/);
  });

  afterAll(async () => {
    await browser?.close();
    await srv?.stop();
    await sb?.cleanup();
  });

  beforeEach(() => {
    page.removeAllListeners('dialog');
  });

  it('shows a running job progress live, over server-sent events, without reloading', async () => {
    writeFileSync(sb.path('live.csv'), `id,text\n${Array.from({ length: 12 }, (_, i) => `r${i},row${i}`).join('\n')}\n`);
    const id = await createJob({ ...slowJob(sb.path('live.csv'), { sleepSeconds: 0.5, maxWorkers: 1 }), name: 'live job' });

    await page.goto(`${srv.url}/#/jobs/${id}`);
    await page.getByText(`Job #${id}: live job`).waitFor();
    expect(await stateOnPage()).toBe('CREATED');
    await page.evaluate(() => ((window as any).__sameDocument = true));

    // Started from elsewhere (the API), seen here through the event stream.
    await call(srv.url, `/jobs/${id}/start`, { method: 'POST', body: { skip_test: true } });
    const seen = new Set<string>();
    const deadline = Date.now() + 40_000;
    let midShot = false;
    for (;;) {
      const done = (await page.getByTestId('done').textContent()) ?? '';
      seen.add(done);
      const n = Number(done.split('/')[0]);
      if (!midShot && n >= 3 && n < 12) {
        await shot('1-job-running');
        midShot = true;
      }
      if (done === '12/12') break;
      if (Date.now() > deadline) throw new Error(`no progress: saw ${[...seen].join(', ')}`);
      await sleep(100);
    }
    const intermediate = [...seen].map((d) => Number(d.split('/')[0])).filter((n) => n > 0 && n < 12);
    expect(intermediate.length, `values seen: ${[...seen].join(', ')}`).toBeGreaterThanOrEqual(3);
    await page.waitForFunction(() => document.querySelector('main [data-testid="state"]')?.textContent === 'COMPLETED');
    expect(await page.evaluate(() => (window as any).__sameDocument)).toBe(true);
    await page.waitForFunction(() => document.querySelector('[data-testid="chart-completed-last"]')?.textContent === '12');
    // The COMPLETED status can render before the last unit event arrives over SSE: wait for all 12, never more.
    await expect.poll(() => page.locator('[data-testid="events"] [data-type="unit"]').count()).toBe(12);
    await expect.poll(() => page.locator('#live').textContent()).toBe('job finished');
    await shot('2-job-completed');
    // The download links read as names, each to its own format (not raw URLs run together with commas).
    const downloads = page.locator('a[data-testid^="download-"]');
    expect(await downloads.allTextContents()).toEqual(['CSV', 'JSONL', 'JSON', 'Markdown']);
    const key = await page.evaluate(() => localStorage.getItem('abp_session_key'));
    const hrefs = await downloads.evaluateAll((links) => links.map((a) => a.getAttribute('href') as string));
    expect(hrefs).toEqual(['csv', 'jsonl', 'json', 'markdown'].map((f) => `/jobs/${id}/results?format=${f}&session_key=${key}`));
    // A download is a plain navigation: the key in its address (the cookie alone opens no data) makes it work.
    expect(await page.evaluate(async (href) => (await fetch(href)).status, hrefs[0] as string)).toBe(200);
    expect(await page.evaluate(async (href) => (await fetch(href)).status, `/jobs/${id}/results?format=csv`)).toBe(401);
    expect(await downloads.first().locator('xpath=..').textContent()).toBe('Download results: CSV · JSONL · JSON · Markdown');

    // The job list shows it with its state and progress.
    await page.goto(`${srv.url}/#/`);
    const row = page.locator(`[data-testid="jobs"] tr[data-job="${id}"]`);
    await row.waitFor();
    expect(await row.getByTestId('state').textContent()).toBe('COMPLETED');
    expect(await row.getByTestId('done').textContent()).toBe('12/12');
    await shot('3-job-list');
  });

  it('signs one browser in to two servers of one database: each keeps its own cookie and key, and both stay signed in', async () => {
    const other = await startServe(sb);
    const second = await context.newPage();
    try {
      writeFileSync(sb.path('both.csv'), 'id,text\nb1,both\n');
      const id = await createJob({ ...slowJob(sb.path('both.csv')), name: 'seen from both' });
      expect((await second.goto(other.login))?.status()).toBe(200);
      await second.locator(`[data-testid="jobs"] tr[data-job="${id}"]`).waitFor();
      const names = (await context.cookies()).map((c) => c.name).filter((n) => n.startsWith('abp_session')).sort();
      expect(names).toEqual([`abp_session_${other.port}`, `abp_session_${srv.port}`].sort());
      // Each origin (port included) has its own key in its own storage.
      const keyA = await page.evaluate(() => localStorage.getItem('abp_session_key'));
      const keyB = await second.evaluate(() => localStorage.getItem('abp_session_key'));
      expect(keyA).toBeTruthy();
      expect(keyB).toBeTruthy();
      expect(keyA).not.toBe(keyB);
      // Signing in to the second server left the first one signed in.
      await page.goto(`${srv.url}/#/`);
      await page.locator(`[data-testid="jobs"] tr[data-job="${id}"]`).waitFor();
    } finally {
      await second.close();
      await other.stop();
    }
  });

  it('opens a unit from the unit table: payload, rendered prompt and output', async () => {
    writeFileSync(sb.path('units.csv'), 'id,text\nu1,first\nu2,second\nu3,third\n');
    const id = await createJob({ ...slowJob(sb.path('units.csv'), { failOn: 'third' }), name: 'units job' });
    await call(srv.url, `/jobs/${id}/start`, { method: 'POST', body: { skip_test: true } });
    await waitForStatus(srv.url, id, (j) => j.status === 'FAILED');

    await page.goto(`${srv.url}/#/jobs/${id}`);
    const rows = page.locator('[data-testid="units"] tbody tr');
    await expect.poll(() => rows.count()).toBe(3);
    // Filter the table to the failed unit.
    await page.getByTestId('unit-filter').selectOption('FAILED');
    await expect.poll(() => rows.count()).toBe(1);
    expect(await rows.first().textContent()).toContain('bad item third');
    await page.getByTestId('unit-filter').selectOption('');
    await expect.poll(() => rows.count()).toBe(3);

    await page.locator('[data-testid="units"] tbody tr', { hasText: 'u2' }).getByRole('link').click();
    await page.getByTestId('output').waitFor();
    expect(await page.getByTestId('output').textContent()).toBe('second');
    expect(JSON.parse((await page.getByTestId('payload').textContent()) ?? '')).toMatchObject({ id: 'u2', text: 'second' });
    expect(await page.getByTestId('prompt').textContent()).toContain('second');
    expect(await page.getByTestId('conversation').textContent()).toContain('No conversation');
    await shot('4-unit-detail');
  });

  it('shows an agent conversation with each tool call paired to its result', async () => {
    writeFileSync(sb.path('conv.csv'), 'id,text\nc1,talk\n');
    const id = await createJob({ ...slowJob(sb.path('conv.csv')), name: 'conversation job' });
    await call(srv.url, `/jobs/${id}/start`, { method: 'POST', body: { skip_test: true } });
    await waitForStatus(srv.url, id, (j) => j.status === 'COMPLETED');
    const unitId = (await call(srv.url, `/jobs/${id}/units`)).json.units[0].unit_id;
    // The claude worker records stream-json messages as unit events of these kinds and shapes.
    const db = new Database(sb.env.ABP_DB as string);
    const insert = db.prepare('insert into unit_events (unit_id, job_id, attempt, kind, data, created_at) values (?, ?, 1, ?, ?, ?)');
    const events = [
      ['init', { session_id: 's1', model: 'claude-test', tools: ['Read'] }],
      ['assistant', { role: 'assistant', content: [{ type: 'text', text: 'Let me read both files.' }, { type: 'tool_use', id: 'toolu_A', name: 'Read', input: { file_path: '/a.txt' } }, { type: 'tool_use', id: 'toolu_B', name: 'Read', input: { file_path: '/b.txt' } }] }],
      ['user', { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_B', content: 'contents of b' }, { type: 'tool_result', tool_use_id: 'toolu_A', content: [{ type: 'text', text: 'contents of a' }], is_error: false }] }],
      ['assistant', { role: 'assistant', content: [{ type: 'text', text: 'Both files say hello.' }] }],
      ['result', { subtype: 'success', num_turns: 2, total_cost_usd: 0.001 }],
    ] as const;
    for (const [kind, data] of events) insert.run(unitId, id, kind, JSON.stringify(data), Date.now());
    db.close();

    await page.goto(`${srv.url}/#/jobs/${id}/units/${unitId}`);
    await page.getByTestId('conversation').waitFor();
    const callA = page.locator('[data-tool-use="toolu_A"]');
    const callB = page.locator('[data-tool-use="toolu_B"]');
    expect(await callA.locator('b').first().textContent()).toBe('tool call: Read');
    expect(await callA.locator('[data-tool-result="toolu_A"]').textContent()).toContain('contents of a');
    expect(await callB.locator('[data-tool-result="toolu_B"]').textContent()).toContain('contents of b');
    expect(await callA.textContent()).not.toContain('contents of b');
    expect(await page.getByTestId('conversation').textContent()).toContain('Both files say hello.');
    await shot('5-conversation');
  });

  it('starts a test unit and approves it from the job page', async () => {
    writeFileSync(sb.path('approve.csv'), 'id,text\na1,one\na2,two\na3,three\n');
    const id = await createJob({ ...slowJob(sb.path('approve.csv')), name: 'approve job' });
    await page.goto(`${srv.url}/#/jobs/${id}`);
    await page.locator('button[data-action="start"]').click();
    const panel = page.getByTestId('test-unit');
    await panel.waitFor();
    await expect.poll(() => panel.getByTestId('state').textContent(), { timeout: 30_000 }).toBe('SUCCEEDED');
    expect(await panel.locator('pre').first().textContent()).toBe('one');
    const approve = page.locator('button[data-action="approve"]');
    await expect.poll(() => approve.isEnabled()).toBe(true);
    await shot('6-test-unit-awaiting-approval');
    await approve.click();
    await expect.poll(stateOnPage, { timeout: 30_000 }).toBe('COMPLETED');
    expect((await call(srv.url, `/jobs/${id}`)).json.counts.succeeded).toBe(3);
    await shot('7-approved-and-completed');
  });

  it('cancels a running job after asking', async () => {
    writeFileSync(sb.path('cancel.csv'), `id,text\n${Array.from({ length: 20 }, (_, i) => `k${i},row${i}`).join('\n')}\n`);
    const id = await createJob({ ...slowJob(sb.path('cancel.csv'), { sleepSeconds: 1, maxWorkers: 1 }), name: 'cancel job' });
    await page.goto(`${srv.url}/#/jobs/${id}`);
    await page.locator('button[data-action="skip-test"]').click();
    await expect.poll(stateOnPage).toBe('RUNNING');
    // Declining the confirmation changes nothing.
    page.once('dialog', (d) => void d.dismiss());
    await page.locator('button[data-action="cancel"]').click();
    await sleep(300);
    expect((await call(srv.url, `/jobs/${id}`)).json.status).toBe('RUNNING');
    let asked = '';
    page.once('dialog', (d) => {
      asked = d.message();
      void d.accept();
    });
    await page.locator('button[data-action="cancel"]').click();
    await expect.poll(stateOnPage).toBe('CANCELLED');
    expect(asked).toContain('Cancel this job?');
    expect((await call(srv.url, `/jobs/${id}`)).json.status).toBe('CANCELLED');
    expect(await page.locator('button[data-action="cancel"]').count()).toBe(0);
    await shot('8-cancelled');
  });

  it('shows an XSS payload in items, output and names as inert text', async () => {
    const img = '<img src=x onerror=window.__xss=1>';
    const script = '<script>window.__xss=2</script>';
    writeFileSync(sb.path('xss.csv'), `id,text\nx1,${img}\nx2,${script}\n`);
    const id = await createJob({ ...slowJob(sb.path('xss.csv')), name: '<img src=y onerror=window.__xss=3>' });
    await call(srv.url, `/jobs/${id}/start`, { method: 'POST', body: { skip_test: true } });
    await waitForStatus(srv.url, id, (j) => j.status === 'COMPLETED');

    await page.goto(`${srv.url}/#/`);
    await page.locator(`tr[data-job="${id}"]`).waitFor();
    expect(await page.locator(`tr[data-job="${id}"]`).textContent()).toContain('<img src=y onerror=window.__xss=3>');

    await page.goto(`${srv.url}/#/jobs/${id}`);
    await expect.poll(() => page.locator('[data-testid="units"] tbody tr').count()).toBe(2);
    const units = (await call(srv.url, `/jobs/${id}/units`)).json.units;
    for (const [unit, text] of [
      [units[0], img],
      [units[1], script],
    ] as const) {
      await page.goto(`${srv.url}/#/jobs/${id}/units/${unit.unit_id}`);
      await page.getByTestId('output').waitFor();
      expect(await page.getByTestId('output').textContent()).toBe(text);
      expect(await page.getByTestId('payload').textContent()).toContain(text);
      expect(await page.getByTestId('prompt').textContent()).toContain(text);
      await shot(`9-xss-unit-${unit.item_id}`);
    }
    await sleep(300);
    expect(await page.evaluate(() => (window as any).__xss)).toBeUndefined();
    expect(await page.locator('main img, main script').count()).toBe(0);
  });
});
