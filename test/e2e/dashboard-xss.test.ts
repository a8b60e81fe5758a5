/// <reference lib="dom" />
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, Sandbox } from '../helpers/cli.js';
import { launchChromium, type Browser } from '../helpers/chromium.js';
import { TEST_BACKEND } from '../helpers/postgres.js';
import { call, startServe, waitForStatus, type Served } from '../helpers/serve.js';

/**
 * Security point 7 (docs/security.md): whatever an item, an agent or a client
 * puts into a job (a name, a payload, an output, an error, a conversation, a
 * checkpoint) reaches the dashboard as text. Real Chromium, real `abp serve`:
 * every payload sets a window flag or opens a dialog if it ever runs.
 */

/** Each payload, if it ran, would set window.__xss to its own tag (or open a dialog). */
const PAYLOADS = [
  `<script>window.__xss='script'</script>`,
  `<img src=x onerror="window.__xss='img'">`,
  `<svg onload="window.__xss='svg'"><circle r=5></circle></svg>`,
  `<a href="javascript:window.__xss='link'" id=xss-link>click me</a>`,
  `[a markdown link](javascript:window.__xss='md')`,
  `<iframe src="javascript:window.__xss='iframe'"></iframe>`,
  `"><details open ontoggle="window.__xss='toggle'">`,
  `<style>@import 'http://evil.example/x.css';</style><b onmouseover=alert(1)>hover</b>`,
];

let sb: Sandbox;
let srv: Served;
let browser: Browser | undefined;
let context: BrowserContext;
let page: Page;
const dialogs: string[] = [];
let jobId: number;
let units: { unit_id: number; item_id: string }[];

/** Everything on the page that could run: event-handler attributes, javascript: URLs, scripts, frames, images. */
const liveMarkup = () =>
  page.evaluate(() => {
    const found: string[] = [];
    for (const el of Array.from(document.querySelectorAll('*'))) {
      for (const attr of Array.from(el.attributes)) {
        if (attr.name.startsWith('on')) found.push(`${el.tagName} ${attr.name}`);
        if (/^\s*javascript:/i.test(attr.value)) found.push(`${el.tagName} ${attr.name}=${attr.value}`);
      }
    }
    for (const el of Array.from(document.querySelectorAll('main script, main iframe, main img, main style, main object, main embed'))) found.push(el.tagName);
    const scripts = Array.from(document.scripts).map((s) => s.getAttribute('src'));
    return { found, scripts, flag: (window as any).__xss ?? null };
  });

describe.skipIf(TEST_BACKEND === 'postgres')('7. the dashboard shows hostile data as inert text', () => {
  beforeAll(async () => {
    sb = new Sandbox();
    srv = await startServe(sb);
    const csv = sb.path('xss.csv');
    writeFileSync(csv, `id,text\n${PAYLOADS.map((p, i) => `x${i},"${p.replace(/"/g, '""')}"`).join('\n')}\n`);
    // Each unit echoes its payload on stdout and stderr; every other one fails, so it lands in the error too.
    const r = await call(srv.url, '/jobs', {
      method: 'POST',
      body: {
        name: `<img src=y onerror="window.__xss='name'">`,
        user_intent: `<script>window.__xss='intent'</script>`,
        enumerator_type: 'csv',
        enumerator_config: { file_path: csv, id_column: 'id' },
        worker_type: 'shell',
        worker_config: { command: 'sh', args: ['-c', 'printf "%s" "$1"; printf "%s" "$1" >&2; case "$2" in *[13579]) exit 1;; esac', 'sh', '{{item.text}}', '{{item.id}}'] },
        max_workers: 2,
        max_retries: 0,
      },
    });
    expect(r.status, r.text).toBe(201);
    jobId = r.json.job_id;
    await call(srv.url, `/jobs/${jobId}/start`, { method: 'POST', body: { skip_test: true } });
    await waitForStatus(srv.url, jobId, (j) => j.status === 'FAILED' || j.status === 'COMPLETED');
    units = (await call(srv.url, `/jobs/${jobId}/units?limit=50`)).json.units;
    // An agent conversation carrying the payloads, as the claude worker records it.
    const db = new Database(sb.env.ABP_DB as string);
    const insert = db.prepare('insert into unit_events (unit_id, job_id, attempt, kind, data, created_at) values (?, ?, 1, ?, ?, ?)');
    const unit = units[0]!.unit_id;
    const events: [string, unknown][] = [
      ['init', { session_id: PAYLOADS[1], tools: [PAYLOADS[0]] }],
      ['assistant', { role: 'assistant', content: [{ type: 'text', text: PAYLOADS[0] }, { type: 'tool_use', id: 'toolu_x" onmouseover="window.__xss=1', name: PAYLOADS[1], input: { command: PAYLOADS[3] } }, { type: 'thinking', thinking: PAYLOADS[2] }] }],
      ['user', { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_x" onmouseover="window.__xss=1', content: [{ type: 'text', text: PAYLOADS[5] }] }] }],
      [PAYLOADS[6]!, { anything: PAYLOADS[4] }],
    ];
    for (const [kind, data] of events) insert.run(unit, jobId, kind, JSON.stringify(data), Date.now());
    db.close();

    browser = await launchChromium();
    ({ context, page } = browser);
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    expect((await page.goto(srv.login))?.status()).toBe(200);
  });

  afterAll(async () => {
    await browser?.close();
    await srv?.stop();
    await sb?.cleanup();
  });

  it('the job list, the job page (with a live checkpoint) and every unit page show the payloads as text, and none runs', async () => {
    await page.goto(`${srv.url}/#/`);
    const row = page.locator(`tr[data-job="${jobId}"]`);
    await row.waitFor();
    expect(await row.textContent()).toContain(`<img src=y onerror="window.__xss='name'">`);

    // A checkpoint from an API client reaches the job page's event log over server-sent events.
    const checkpoint = await call(srv.url, `/jobs/${jobId}/checkpoints`, { method: 'POST', body: { type: PAYLOADS[1]!.slice(0, 100), data: { note: PAYLOADS[0] } } });
    expect(checkpoint.status).toBe(201);
    await page.goto(`${srv.url}/#/jobs/${jobId}`);
    await page.locator('[data-testid="units"] tbody tr').first().waitFor();
    await page.locator('[data-testid="events"] [data-type="checkpoint"]').waitFor({ timeout: 20_000 });
    expect(await page.getByTestId('events').textContent()).toContain(PAYLOADS[0]);
    const errors = await page.locator('[data-testid="units"] tbody').textContent();
    expect(errors).toContain(PAYLOADS[1]);

    for (const unit of units) {
      const payload = PAYLOADS[Number(unit.item_id.slice(1))]!;
      await page.goto(`${srv.url}/#/jobs/${jobId}/units/${unit.unit_id}`);
      await page.getByTestId('output').waitFor();
      expect(await page.getByTestId('output').textContent()).toBe(payload);
      expect(await page.getByTestId('stderr').textContent()).toBe(payload);
      expect(JSON.parse((await page.getByTestId('payload').textContent()) ?? '{}').text).toBe(payload);
      if (Number(unit.item_id.slice(1)) % 2 === 1) expect(await page.getByTestId('error').textContent()).toContain(payload);
      const live = await liveMarkup();
      expect(live.found, unit.item_id).toEqual([]);
    }
    // Hover and click everything a payload might have turned into a trigger.
    await page.goto(`${srv.url}/#/jobs/${jobId}/units/${units[3]!.unit_id}`);
    await page.getByTestId('output').waitFor();
    await page.getByTestId('output').hover();
    await page.getByTestId('output').click();

    const final = await liveMarkup();
    expect(final).toEqual({ found: [], scripts: ['/assets/app.js'], flag: null });
    expect(dialogs).toEqual([]);
  });

  it('an agent conversation full of payloads (text, tool names, inputs, results, odd event kinds) is shown as text', async () => {
    await page.goto(`${srv.url}/#/jobs/${jobId}/units/${units[0]!.unit_id}`);
    const conversation = page.getByTestId('conversation');
    await conversation.waitFor();
    const text = (await conversation.textContent()) ?? '';
    // A tool call's input is shown as JSON, so the quotes inside come escaped.
    for (const p of [PAYLOADS[0], `tool call: ${PAYLOADS[1]}`, JSON.stringify(PAYLOADS[3]), PAYLOADS[5], PAYLOADS[6], PAYLOADS[4]]) expect(text).toContain(p);
    // Open every collapsed event, so nothing stays unrendered.
    for (const d of await page.locator('main details').all()) await d.evaluate((el) => ((el as HTMLDetailsElement).open = true));
    expect(await liveMarkup()).toEqual({ found: [], scripts: ['/assets/app.js'], flag: null });
    expect(dialogs).toEqual([]);
  });

  it('a strict Content-Security-Policy is sent, and it stops inline code even if markup reached the page', async () => {
    for (const path of ['/', '/assets/app.js', '/assets/style.css']) {
      const r = await call(srv.url, path);
      const csp = String(r.headers['content-security-policy'] ?? '');
      expect(csp, path).toContain("script-src 'self'");
      expect(csp).toContain("default-src 'none'");
      expect(csp).toContain("frame-ancestors 'none'");
      expect(csp).not.toContain('unsafe-inline');
      expect(csp).not.toContain('unsafe-eval');
      expect(r.headers['x-content-type-options']).toBe('nosniff');
    }
    // The second wall: markup forced into the page by the test itself still does not run.
    const force = async (target: Page) =>
      target.evaluate(async () => {
        const violations: string[] = [];
        document.addEventListener('securitypolicyviolation', (e) => violations.push(e.violatedDirective));
        const s = document.createElement('script');
        s.textContent = "window.__csp = (window.__csp ?? '') + 'inline script;'";
        document.body.append(s);
        document.body.insertAdjacentHTML('beforeend', `<img src="data:," onerror="window.__csp = (window.__csp ?? '') + 'handler;'"><a id="csp-js" href="javascript:void(window.__csp=(window.__csp??'')+'link;')">x</a>`);
        (document.getElementById('csp-js') as HTMLAnchorElement).click();
        await new Promise((r) => setTimeout(r, 300));
        return { flag: (window as any).__csp ?? null, violations };
      });
    await page.goto(`${srv.url}/#/`);
    await page.locator('[data-testid="jobs"]').waitFor();
    const blocked = await force(page);
    expect(blocked.flag).toBeNull();
    expect(blocked.violations.length).toBeGreaterThanOrEqual(3);
    // The control: the same markup on a page without the policy does run.
    const bare = await context.newPage();
    await bare.setContent('<!doctype html><html><body></body></html>');
    const ran = (await force(bare)).flag as string;
    for (const what of ['inline script;', 'handler;', 'link;']) expect(ran).toContain(what);
    await bare.close();
    expect(dialogs).toEqual([]);
  });

  it('the dashboard code never writes markup from data: no innerHTML, outerHTML, insertAdjacentHTML, document.write or eval', () => {
    const source = readFileSync(join(ROOT, 'dashboard', 'app.js'), 'utf8');
    expect(source.match(/\b(innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\s*\(|new Function|srcdoc|DOMParser|createContextualFragment)\b/g)).toBeNull();
    // Attributes come from the code's own names; "on…" names become listeners, never attributes.
    expect(source).toContain("if (key.startsWith('on')) el.addEventListener(key.slice(2), value);");
    const html = readFileSync(join(ROOT, 'dashboard', 'index.html'), 'utf8');
    expect(html.match(/<script\b[^>]*>/g)).toEqual(['<script type="module" src="/assets/app.js">']);
  });
});
