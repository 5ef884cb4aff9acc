import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { startSystem, waitFor, WEB, type TestSystem } from './harness.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = join(WEB, 'test-artifacts');

let sys: TestSystem;
let ctx: BrowserContext;
let profile: string;
const consoleErrors: string[] = [];
/** While the test itself takes the realtime node down, the browser's reports of failed reconnects go here. */
let outage = false;
const outageErrors: string[] = [];
const OUTAGE_NOISE = /WebSocket connection to .*\/socket\.io\/.* failed|Failed to load resource: the server responded with a status of 502/;

/** Pages a test opened: closed after it even when it fails, so none reports errors into the next. */
const openPages: Page[] = [];

async function newPage(viewport = { width: 1280, height: 900 }): Promise<Page> {
  const page = await ctx.newPage();
  openPages.push(page);
  await page.setViewportSize(viewport);
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const text = `${m.text()} @ ${m.location().url}`;
    if (outage && OUTAGE_NOISE.test(text)) outageErrors.push(text);
    else consoleErrors.push(text);
  });
  page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
  return page;
}

async function login(page: Page): Promise<void> {
  await page.goto(sys.webUrl);
  // Start signed out, whatever an earlier test left behind (the profile keeps the session).
  const logout = page.getByRole('button', { name: 'Log out' });
  await page.getByLabel('Username').or(logout).waitFor();
  if (await logout.isVisible()) await logout.click();
  // Keyboard only: the username field has focus, Tab to the password, Enter submits.
  await page.getByLabel('Username').waitFor();
  await page.keyboard.type('admin');
  await page.keyboard.press('Tab');
  await page.keyboard.type(sys.adminPassword);
  await page.keyboard.press('Enter');
  await page.locator('#conn[data-state="live"]').waitFor({ timeout: 60_000 });
}

const row = (page: Page, id: string) => page.locator(`li.job[data-job-id="${id}"]`);

async function submit(page: Page, url: string, opts: { dub?: string; container?: string } = {}): Promise<string> {
  await page.getByLabel('Video URL').fill(url);
  if (opts.dub) {
    await page.getByLabel('Dub the audio').check();
    await page.getByLabel('Target language').fill(opts.dub);
  }
  if (opts.container) await page.getByLabel('Container').selectOption(opts.container);
  await page.getByRole('button', { name: 'Submit' }).click();
  const msg = page.locator('#submit-msg');
  await expect.poll(() => msg.textContent(), { timeout: 60_000 }).toMatch(/Job created: /);
  return ((await msg.textContent()) ?? '').replace(/^.*Job created: /, '').trim();
}

/** Debian's chromium, installed here when missing (the test command runs as root on these machines). */
function ensureChromium(): void {
  if (existsSync(CHROMIUM)) return;
  try {
    execFileSync('apt-get', ['install', '-y', '--no-install-recommends', 'chromium'], { stdio: 'ignore', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  } catch (err) {
    throw new Error(`${CHROMIUM} is missing and "apt-get install -y chromium" failed (${(err as Error).message}); install Debian's chromium package or set CHROMIUM_PATH`);
  }
}

beforeAll(async () => {
  ensureChromium();
  sys = await startSystem();
  profile = mkdtempSync(join(tmpdir(), 'dubgate-chromium-'));
  ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: false, // --headless=new below
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  mkdirSync(ARTIFACTS, { recursive: true });
}, 240_000); // starting the system on a loaded machine: a deadline, not an expectation

afterEach(async () => {
  for (const page of openPages.splice(0)) await page.close().catch(() => {});
});

afterAll(async () => {
  await ctx?.close().catch(() => {});
  await sys?.stop();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

describe('dashboard against the running system', () => {
  it('logs in, submits, watches progress to COMPLETE, cancels, deletes, catches up after a lost connection, logs out', async () => {
    const page = await newPage();
    await login(page);
    await expect.poll(() => page.locator('#who').textContent()).toContain('admin');

    // Notifications (a disk-space hold, as the scheduler publishes it) show in the visible area.
    await sys.publish('events:notification', {
      jobId: 'system',
      type: 'notification',
      timestamp: new Date().toISOString(),
      payload: { type: 'disk_space_low', title: 'Low disk space', message: 'Downloads are held until space is free.', severity: 'warning' },
    });
    await expect.poll(() => page.locator('#notifications .note-warning').textContent(), { timeout: 60_000 }).toContain('Low disk space');
    await page.getByRole('button', { name: 'Dismiss: Low disk space' }).click();
    await expect.poll(() => page.locator('#notifications .note-warning').count(), { timeout: 60_000 }).toBe(0);

    // Rejected input: the API's message and code are shown.
    await page.getByLabel('Video URL').fill('ftp://example.com/video.mp4');
    await page.getByRole('button', { name: 'Submit' }).click();
    await expect.poll(() => page.locator('#submit-msg').textContent(), { timeout: 60_000 }).toMatch(/^Rejected: .+\[[A-Z_]+\]$/);
    // The browser reports the deliberate 4xx answer as a failed resource load; that is not an app error.
    const expected = consoleErrors.filter((e) => /status of 4\d\d/.test(e) && e.includes('/api/jobs'));
    expect(expected.length).toBeLessThanOrEqual(1);
    consoleErrors.splice(0, consoleErrors.length, ...consoleErrors.filter((e) => !expected.includes(e)));
    // Dubbing without a language is caught before it is sent.
    await page.getByLabel('Video URL').fill('http://127.0.0.1/x.mp4');
    await page.getByLabel('Dub the audio').check();
    await page.getByRole('button', { name: 'Submit' }).click();
    await expect.poll(() => page.locator('#submit-msg').textContent()).toContain('target language');
    await page.getByLabel('Dub the audio').uncheck();

    // A job that runs to the end, dubbed, in mkv: its bar moves and its state reaches COMPLETE.
    await page.evaluate(() => {
      const w = window as unknown as { barValues: Record<string, number[]> };
      w.barValues = {};
      const record = (el: Element) => {
        const id = el.closest('li.job')?.getAttribute('data-job-id');
        if (id && el.hasAttribute('aria-valuenow')) (w.barValues[id] ??= []).push(Number(el.getAttribute('aria-valuenow')));
      };
      new MutationObserver((changes) => {
        for (const c of changes) {
          if (c.type === 'attributes') record(c.target as Element);
          for (const n of c.addedNodes) {
            if (!(n instanceof Element)) continue;
            if (n.matches('[role="progressbar"]')) record(n);
            n.querySelectorAll('[role="progressbar"]').forEach(record);
          }
        }
      }).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ['aria-valuenow'] });
    });
    const doneId = await submit(page, 'http://127.0.0.1/videos/first-clip.mp4', { dub: 'es', container: 'mkv' });
    const bar = row(page, doneId).locator('[role="progressbar"]');
    // The values the bar took, recorded in the page as they are set (sampling them from here
    // could miss steps on a loaded machine).
    await waitFor('the progress bar to move', async () => {
      const values = await page.evaluate((id) => ((window as unknown as { barValues: Record<string, number[]> }).barValues[id] ?? []), doneId);
      return new Set(values.filter((v) => v > 0 && v < 100)).size >= 3 ? values : null;
    }, 90_000, 100);
    await expect.poll(() => row(page, doneId).locator('[data-testid="progress-text"]').textContent()).toMatch(/%|done/);
    await expect.poll(() => row(page, doneId).getAttribute('data-status'), { timeout: 90_000 }).toBe('COMPLETE');
    // The bar is drawn from the progress events, the status from state_change: they arrive apart.
    await expect.poll(() => bar.getAttribute('aria-valuenow'), { timeout: 60_000 }).toBe('100');

    // A job held in its download: cancel it from its row.
    const holdId = await submit(page, 'http://127.0.0.1/videos/hold-me.mp4');
    await expect.poll(() => row(page, holdId).getAttribute('data-status'), { timeout: 60_000 }).toBe('DOWNLOADING');
    await expect.poll(async () => Number(await row(page, holdId).locator('[role="progressbar"]').getAttribute('aria-valuenow')), { timeout: 60_000 }).toBeGreaterThan(0);
    await row(page, holdId).getByRole('button', { name: /^Cancel / }).click();
    await expect.poll(() => row(page, holdId).getAttribute('data-status'), { timeout: 60_000 }).toBe('CANCELED');
    // Now it may be retried, not canceled.
    await row(page, holdId).getByRole('button', { name: /^Retry / }).waitFor();
    expect(await row(page, holdId).getByRole('button', { name: /^Cancel / }).count()).toBe(0);

    // A job made elsewhere (the REST API) appears without a reload: job_added.
    const made = await sys.api<{ job: { id: string } }>('POST', '/api/jobs', { url: 'http://127.0.0.1/videos/from-elsewhere.mp4' });
    expect(made.status).toBe(201);
    const otherId = made.body.job.id;
    await row(page, otherId).waitFor({ timeout: 60_000 });

    // Delete needs confirmation: "Keep it" keeps the job, "Delete" removes the row.
    await row(page, otherId).getByRole('button', { name: /^Delete / }).click();
    await page.locator('dialog#confirm[open]').waitFor();
    await page.getByRole('button', { name: 'Keep it' }).click();
    expect(await row(page, otherId).count()).toBe(1);
    await row(page, otherId).getByRole('button', { name: /^Delete / }).click();
    await page.locator('dialog#confirm[open]').getByRole('button', { name: 'Delete' }).click();
    await row(page, otherId).waitFor({ state: 'detached', timeout: 60_000 });
    expect((await sys.api('GET', `/api/jobs/${otherId}`)).status).toBe(404);

    // Filters and search.
    await page.getByLabel('Status').selectOption('CANCELED');
    await row(page, doneId).waitFor({ state: 'detached' });
    await row(page, holdId).waitFor();
    await page.getByLabel('Status').selectOption('');
    await page.getByLabel('Search').fill('first-clip');
    await row(page, holdId).waitFor({ state: 'detached' });
    await row(page, doneId).waitFor();
    await page.getByLabel('Search').fill('');
    await row(page, holdId).waitFor();

    // Lost connection: the realtime node dies; a job is added meanwhile; after the reconnect
    // the list catches up and the new job's live updates arrive again.
    outage = true;
    await sys.kill('realtime');
    await page.locator('#conn[data-state="reconnecting"]').waitFor({ timeout: 60_000 });
    const whileAway = await sys.api<{ job: { id: string } }>('POST', '/api/jobs', { url: 'http://127.0.0.1/videos/while-away.mp4' });
    await new Promise((r) => setTimeout(r, 500));
    await sys.start('realtime');
    await page.locator('#conn[data-state="live"]').waitFor({ timeout: 60_000 });
    outage = false;
    await row(page, whileAway.body.job.id).waitFor({ timeout: 60_000 });
    await expect.poll(() => row(page, whileAway.body.job.id).getAttribute('data-status'), { timeout: 90_000 }).toBe('COMPLETE');

    await page.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true });

    // The finished job's page: metadata, events, output path, actions for its state.
    await row(page, doneId).getByRole('link').click();
    await page.getByRole('heading', { name: 'Media' }).waitFor();
    await expect.poll(() => page.locator('table').textContent()).toContain('Test clip');
    await expect.poll(() => page.locator('table').textContent()).toContain('1280×720');
    await expect.poll(() => page.locator('[data-testid="output"]').textContent()).toContain(`${doneId}/output.mkv`);
    await expect.poll(() => page.locator('#events li.event').count()).toBeGreaterThan(3);
    expect(await page.locator('#events').textContent()).toMatch(/COMPLETE/);
    expect(await page.getByRole('button', { name: /^Cancel / }).count()).toBe(0);
    await page.screenshot({ path: join(ARTIFACTS, 'job.png'), fullPage: true });

    // Log out: back to the login form, and the session is gone on the server too.
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByLabel('Username').waitFor();
    await page.reload();
    await page.getByLabel('Username').waitFor();
    expect(consoleErrors).toEqual([]);
    await page.close();
  }, 600_000);

  it('fits a phone-sized screen and works from the keyboard', async () => {
    consoleErrors.length = 0;
    const page = await newPage({ width: 375, height: 740 });
    await login(page);
    await row(page, (await sys.api<{ items: { id: string }[] }>('GET', '/api/jobs?limit=1')).body.items[0]!.id).waitFor();
    const overflow = () => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    expect(await overflow()).toBeLessThanOrEqual(0);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-phone.png'), fullPage: true });

    // Every control is a real, labelled, focusable element; focus is visible.
    const unlabeled = await page.evaluate(() =>
      [...document.querySelectorAll('input, select')].filter((el) => !(el as HTMLInputElement).labels?.length && !el.getAttribute('aria-label')).length,
    );
    expect(unlabeled).toBe(0);
    expect(await page.locator('div[onclick], span[onclick]').count()).toBe(0);
    await page.getByLabel('Video URL').focus();
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement!).outlineStyle);
    expect(outline).not.toBe('none');

    // Open a job with the keyboard and check the page fits too.
    await page.locator('li.job a').first().focus();
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Events and logs' }).waitFor();
    expect(await overflow()).toBeLessThanOrEqual(0);
    expect(consoleErrors).toEqual([]);
    await page.close();
  });

  it('keeps an open job page in step across a lost connection, and acts on the job from there', async () => {
    consoleErrors.length = 0;
    const page = await newPage();
    await login(page);
    const made = await sys.api<{ job: { id: string } }>('POST', '/api/jobs', { url: 'http://127.0.0.1/videos/hold-on-page.mp4' });
    const id = made.body.job.id;
    await row(page, id).getByRole('link').click();
    const status = page.locator('#main [data-testid="status"]').first();
    await expect.poll(() => status.textContent(), { timeout: 60_000 }).toBe('DOWNLOADING');
    await expect.poll(() => page.locator('#events').textContent(), { timeout: 60_000 }).toContain('QUEUED -> DOWNLOADING');
    await expect.poll(async () => Number(await page.locator('#main [role="progressbar"]').getAttribute('aria-valuenow')), { timeout: 60_000 }).toBeGreaterThan(0);

    // Away while the job is canceled elsewhere: after the reconnect the page shows it, with the
    // missed events fetched after the last one it had (no gap, no duplicate).
    outage = true;
    await sys.kill('realtime');
    await page.locator('#conn[data-state="reconnecting"]').waitFor({ timeout: 60_000 });
    expect((await sys.api('POST', `/api/jobs/${id}/cancel`)).status).toBe(200);
    await sys.start('realtime');
    await page.locator('#conn[data-state="live"]').waitFor({ timeout: 60_000 });
    outage = false;
    await expect.poll(() => status.textContent(), { timeout: 60_000 }).toBe('CANCELED');
    await expect.poll(() => page.locator('#events').textContent(), { timeout: 60_000 }).toContain('-> CANCELED');
    const shown = () => page.locator('#events li.event').evaluateAll((els) => els.map((e) => Number((e as HTMLElement).dataset.eventId)));
    const storedIds = async () => (await sys.api<{ items: { id: number }[] }>('GET', `/api/jobs/${id}/logs?after=0&limit=500`)).body.items.map((e) => e.id);
    // An event stored just now (after the cancel) may still be on its way to the page: wait until
    // the two agree (or the deadline passes), then check them.
    await waitFor('the page to show the stored events', async () => JSON.stringify(await shown()) === JSON.stringify(await storedIds()), 60_000).catch(() => undefined);
    const ids = await shown();
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort((a, b) => a - b)).toEqual(ids);
    const stored = await sys.api<{ items: { id: number }[] }>('GET', `/api/jobs/${id}/logs?after=0&limit=500`);
    expect(ids).toEqual(stored.body.items.map((e) => e.id));

    // Actions that apply to its state: retry, then cancel, then delete (confirmed).
    await page.getByRole('button', { name: /^Retry / }).click();
    await expect.poll(() => status.textContent(), { timeout: 60_000 }).toBe('DOWNLOADING');
    await page.getByRole('button', { name: /^Cancel / }).click();
    await expect.poll(() => status.textContent(), { timeout: 60_000 }).toBe('CANCELED');
    await page.getByRole('button', { name: /^Delete / }).click();
    await page.locator('dialog#confirm[open]').getByRole('button', { name: 'Delete' }).click();
    await page.getByRole('heading', { name: 'New job' }).waitFor();
    await row(page, id).waitFor({ state: 'detached' });
    expect((await sys.api('GET', `/api/jobs/${id}`)).status).toBe(404);
    expect(consoleErrors).toEqual([]);
    await page.close();
  }, 600_000);
});
