import './style.css';
import { FORMAT_PRESETS, OUTPUT_CONTAINERS, DEFAULT_FORMAT_PRESET, DEFAULT_OUTPUT_CONTAINER } from '@dubgate/contracts/jobs';
import { JOB_STATES, ACTIVE_STATES, controlRefusal, isTerminal } from '@dubgate/contracts/states';
import { api, ApiError, setUnauthorizedHandler, type SessionUser } from './api.js';
import { Live, type ConnState } from './live.js';
import { h, fmtBytes, fmtSeconds, fmtTime } from './dom.js';
import type { Job, JobDetail, JobEventRecord, Media, WsProgress, WsStateChange } from './types.js';

const main = document.getElementById('main') as HTMLElement;
const notes = document.getElementById('notifications') as HTMLElement;
const who = document.getElementById('who') as HTMLElement;
const conn = document.getElementById('conn') as HTMLElement;
const logoutBtn = document.getElementById('logout') as HTMLButtonElement;
const HINT = 'dubgate.signedIn';

let user: SessionUser | null = null;
let cleanup: () => void = () => {};
const live = new Live();
live.onState = (s: ConnState) => {
  const text = { connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…', offline: '' }[s];
  conn.textContent = text;
  conn.dataset.state = s;
};

// ---------- notifications ----------
type Severity = 'info' | 'success' | 'warning' | 'error';
function notify(severity: Severity, title: string, message = '', jobId?: string): void {
  const note = h(
    'div',
    { class: `note note-${severity}`, role: severity === 'error' ? 'alert' : 'status', 'data-severity': severity },
    h('strong', {}, title),
    message ? h('span', {}, ` ${message}`) : null,
    jobId ? h('a', { href: `#/jobs/${jobId}` }, ' Open job') : null,
    h('button', { type: 'button', class: 'link dismiss', 'aria-label': `Dismiss: ${title}`, onclick: () => note.remove() }, '×'),
  );
  notes.prepend(note);
  while (notes.children.length > 6) notes.lastElementChild?.remove();
  if (severity === 'info' || severity === 'success') setTimeout(() => note.remove(), 8000);
}
live.on({
  notification: (n) => notify(n.severity, n.title, n.message, n.jobId),
});

// ---------- confirmation dialog ----------
function confirmDialog(text: string, yes = 'Delete'): Promise<boolean> {
  const dialog = document.getElementById('confirm') as HTMLDialogElement;
  (document.getElementById('confirm-text') as HTMLElement).textContent = text;
  (document.getElementById('confirm-yes') as HTMLElement).textContent = yes;
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.showModal();
    (document.getElementById('confirm-no') as HTMLElement).focus();
  });
}

// ---------- shared pieces ----------
function progressOf(job: Job): { percent: number; text: string } {
  if (job.status === 'COMPLETE') return { percent: 100, text: 'done' };
  const p = job.progress;
  if (!p) return { percent: 0, text: job.holdReason ? `held: ${job.holdReason}` : '' };
  const parts = [`${Math.round(p.percent)}%`, p.stage];
  if (p.speed !== null) parts.push(`${fmtBytes(p.speed)}/s`);
  if (p.eta !== null) parts.push(`eta ${fmtSeconds(p.eta)}`);
  if (p.step) parts.push(p.step);
  return { percent: p.percent, text: parts.join(' · ') };
}

function progressBar(job: Job): HTMLElement {
  const { percent, text } = progressOf(job);
  const label = `Progress of ${job.url}`;
  return h(
    'div',
    { class: 'progress-wrap' },
    h(
      'div',
      { class: 'progress', role: 'progressbar', 'aria-label': label, 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': Math.round(percent), 'data-testid': 'progress' },
      h('div', { class: 'bar', style: `width:${Math.max(0, Math.min(100, percent))}%` }),
    ),
    h('span', { class: 'progress-text', 'data-testid': 'progress-text' }, text),
  );
}

function statusBadge(job: Job): HTMLElement {
  return h('span', { class: `status status-${job.status.toLowerCase()}`, 'data-testid': 'status' }, job.status);
}

function applyProgress(job: Job, e: WsProgress): void {
  job.progress = { stage: e.type, percent: e.percent, speed: e.speed, eta: e.eta, step: e.stage, updatedAt: e.timestamp ?? new Date().toISOString() };
}

function applyState(job: Job, e: WsStateChange): void {
  job.status = e.to;
  // A retried job starts over; an ended one runs no more (no eta on a canceled job).
  if (e.to === 'QUEUED' || isTerminal(e.to)) job.progress = null;
}

/** Told when this tab deletes a job, so no one asks the API about it any more. */
const deletingListeners = new Set<(id: string) => void>();
function onDeleting(fn: (id: string) => void): () => void {
  deletingListeners.add(fn);
  return () => deletingListeners.delete(fn);
}

async function runAction(job: Job, op: 'cancel' | 'retry' | 'resume' | 'delete', after: () => void): Promise<void> {
  try {
    if (op === 'delete') {
      if (!(await confirmDialog(`Delete the job for ${job.url}? Its files are removed too; this cannot be undone.`))) return;
      for (const fn of deletingListeners) fn(job.id);
      await api.deleteJob(job.id);
      notify('success', 'Job deleted.');
    } else {
      const r = await api.control(job.id, op);
      Object.assign(job, r.job);
      notify('success', `Job ${op === 'cancel' ? 'canceled' : op === 'retry' ? 'queued again' : 'resumed'}.`);
    }
    after();
  } catch (err) {
    notify('error', `Could not ${op} the job:`, err instanceof ApiError ? err.describe() : String(err));
  }
}

function actionButtons(job: Job, after: (op: string) => void): HTMLElement {
  const box = h('div', { class: 'actions' });
  for (const op of ['cancel', 'retry', 'resume'] as const) {
    if (controlRefusal(op, { state: job.status, requestedDubbing: job.requestedDubbing, failedStage: job.failedStage }) === null) {
      box.append(h('button', { type: 'button', class: 'secondary', 'data-action': op, 'aria-label': `${op[0]!.toUpperCase()}${op.slice(1)} ${job.url}`, onclick: () => runAction(job, op, () => after(op)) }, `${op[0]!.toUpperCase()}${op.slice(1)}`));
    }
  }
  box.append(h('button', { type: 'button', class: 'danger', 'data-action': 'delete', 'aria-label': `Delete ${job.url}`, onclick: () => runAction(job, 'delete', () => after('delete')) }, 'Delete'));
  return box;
}

function debounce(fn: () => void, ms: number): () => void {
  let t: ReturnType<typeof setTimeout> | undefined;
  return () => {
    clearTimeout(t);
    t = setTimeout(fn, ms);
  };
}

// ---------- login ----------
function renderLogin(message?: string): void {
  cleanup();
  cleanup = () => {};
  who.textContent = '';
  logoutBtn.hidden = true;
  const err = h('p', { class: 'error', role: 'alert', id: 'login-error' }, message ?? '');
  const form = h(
    'form',
    { class: 'card login', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'Log in'),
    h('label', { for: 'username' }, 'Username'),
    h('input', { id: 'username', name: 'username', autocomplete: 'username', required: true }),
    h('label', { for: 'password' }, 'Password'),
    h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true }),
    err,
    h('button', { type: 'submit' }, 'Log in'),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const fd = new FormData(form);
    err.textContent = '';
    try {
      const u = await api.login(String(fd.get('username')), String(fd.get('password')));
      signedIn(u);
    } catch (ex) {
      err.textContent = ex instanceof ApiError ? (ex.status === 401 ? `Wrong username or password [${ex.code}]` : ex.describe()) : String(ex);
    }
  });
  main.replaceChildren(form);
  (document.getElementById('username') as HTMLInputElement).focus();
}

function signedIn(u: SessionUser): void {
  user = u;
  localStorage.setItem(HINT, '1');
  who.textContent = `${u.username}${u.role === 'admin' ? ' (admin)' : ''}`;
  logoutBtn.hidden = false;
  live.start();
  route();
}

function signedOut(message?: string): void {
  user = null;
  localStorage.removeItem(HINT);
  live.stop();
  if (location.hash && location.hash !== '#/') history.replaceState(null, '', '#/');
  renderLogin(message);
}

logoutBtn.addEventListener('click', async () => {
  live.stop();
  try {
    await api.logout();
  } catch {
    // The session may already be gone; we are logged out either way.
  }
  signedOut('You are logged out.');
});
setUnauthorizedHandler(() => {
  if (user) signedOut('Your session has ended. Log in again.');
});

// ---------- dashboard ----------
function renderDashboard(): () => void {
  const jobs = new Map<string, Job>();
  let order: string[] = [];
  let nextCursor: string | null = null;
  let total = 0;
  let loadSeq = 0;
  const rows = new Map<string, HTMLElement>();
  const deleting = new Set<string>();

  // Submit form
  const formMsg = h('p', { class: 'form-msg', role: 'alert', id: 'submit-msg' });
  const lang = h('input', { id: 'targetLang', name: 'targetLang', placeholder: 'e.g. es, pt-BR', autocomplete: 'off', disabled: true, list: 'langs' });
  const dub = h('input', { id: 'dubbing', name: 'dubbing', type: 'checkbox' });
  dub.addEventListener('change', () => {
    lang.disabled = !dub.checked;
    lang.required = dub.checked;
  });
  const select = (id: string, values: readonly string[], dflt: string) =>
    h('select', { id, name: id }, ...values.map((v) => h('option', { value: v, ...(v === dflt ? { selected: true } : {}) }, v)));
  const form = h(
    'form',
    { class: 'card submit', 'aria-labelledby': 'submit-title', novalidate: true },
    h('h2', { id: 'submit-title' }, 'New job'),
    h('div', { class: 'field wide' }, h('label', { for: 'url' }, 'Video URL'), h('input', { id: 'url', name: 'url', type: 'url', required: true, placeholder: 'https://…', autocomplete: 'off' })),
    h('div', { class: 'field check' }, dub, h('label', { for: 'dubbing' }, 'Dub the audio')),
    h('div', { class: 'field' }, h('label', { for: 'targetLang' }, 'Target language'), lang),
    h('datalist', { id: 'langs' }, ...['en', 'es', 'fr', 'de', 'it', 'pt-BR', 'ja', 'ko', 'zh-Hans', 'ru', 'hi', 'ar'].map((l) => h('option', { value: l }))),
    h('div', { class: 'field' }, h('label', { for: 'formatPreset' }, 'Format'), select('formatPreset', FORMAT_PRESETS, DEFAULT_FORMAT_PRESET)),
    h('div', { class: 'field' }, h('label', { for: 'outputContainer' }, 'Container'), select('outputContainer', OUTPUT_CONTAINERS, DEFAULT_OUTPUT_CONTAINER)),
    h('div', { class: 'field submit-row' }, h('button', { type: 'submit' }, 'Submit')),
    formMsg,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const fd = new FormData(form);
    const url = String(fd.get('url') ?? '').trim();
    formMsg.className = 'form-msg error';
    if (!url) {
      formMsg.textContent = 'Enter the URL of a video.';
      return;
    }
    const body: Record<string, unknown> = { url, formatPreset: fd.get('formatPreset'), outputContainer: fd.get('outputContainer') };
    if (dub.checked) {
      const l = lang.value.trim();
      if (!l) {
        formMsg.textContent = 'Choose a target language for dubbing.';
        lang.focus();
        return;
      }
      Object.assign(body, { requestedDubbing: true, targetLang: l });
    }
    formMsg.textContent = 'Submitting…';
    formMsg.className = 'form-msg';
    try {
      const { job } = await api.createJob(body);
      formMsg.textContent = `Job created: ${job.id}`;
      formMsg.className = 'form-msg ok';
      (form.elements.namedItem('url') as HTMLInputElement).value = '';
      if (!jobs.has(job.id) && matchesFilter(job)) {
        jobs.set(job.id, job);
        order.unshift(job.id);
        total++;
        renderRows();
        void live.subscribe([job.id]);
      }
    } catch (ex) {
      formMsg.className = 'form-msg error';
      formMsg.textContent = `Rejected: ${ex instanceof ApiError ? ex.describe() : String(ex)}`;
    }
  });

  // Filters
  const statusSel = h(
    'select',
    { id: 'status-filter', name: 'status' },
    h('option', { value: '' }, 'All'),
    h('option', { value: ACTIVE_STATES.join(',') }, 'Active'),
    ...JOB_STATES.map((s) => h('option', { value: s }, s)),
  );
  const search = h('input', { id: 'search', name: 'search', type: 'search', placeholder: 'URL contains…', autocomplete: 'off' });
  const filters = h(
    'form',
    { class: 'filters', role: 'search', 'aria-label': 'Filter jobs' },
    h('div', { class: 'field' }, h('label', { for: 'status-filter' }, 'Status'), statusSel),
    h('div', { class: 'field wide' }, h('label', { for: 'search' }, 'Search'), search),
  );
  filters.addEventListener('submit', (e) => {
    e.preventDefault();
    void load();
  });
  statusSel.addEventListener('change', () => void load());
  const searchLater = debounce(() => void load(), 300);
  search.addEventListener('input', searchLater);

  const list = h('ul', { class: 'jobs', id: 'jobs', 'aria-label': 'Jobs' });
  const summary = h('p', { class: 'summary', 'aria-live': 'polite' });
  const more = h('button', { type: 'button', class: 'secondary', hidden: true, onclick: () => void load(true) }, 'Load more');

  function matchesFilter(job: Job): boolean {
    const st = statusSel.value;
    if (st && !st.split(',').includes(job.status)) return false;
    const q = search.value.trim().toLowerCase();
    return !q || job.url.toLowerCase().includes(q);
  }

  function row(job: Job): HTMLElement {
    const li = h(
      'li',
      { class: 'job', 'data-job-id': job.id, 'data-status': job.status },
      h(
        'div',
        { class: 'job-head' },
        h('a', { href: `#/jobs/${job.id}`, class: 'job-url', title: job.url }, job.url),
        statusBadge(job),
      ),
      h(
        'div',
        { class: 'job-meta' },
        `${job.requestedDubbing ? `dub → ${job.targetLang}` : 'no dubbing'} · ${job.formatPreset} · ${job.outputContainer} · ${fmtTime(job.createdAt)}`,
        job.holdReason ? h('span', { class: 'hold' }, ` · held: ${job.holdReason}`) : null,
        job.error ? h('span', { class: 'error' }, ` · ${job.error.message} [${job.error.code}]`) : null,
      ),
      progressBar(job),
      actionButtons(job, (op) => {
        if (op === 'delete') removeRow(job.id);
        else updateRow(job.id);
      }),
    );
    return li;
  }

  function renderRows(): void {
    rows.clear();
    const items = order.map((id) => jobs.get(id)!).filter(Boolean);
    list.replaceChildren(...items.map((j) => {
      const r = row(j);
      rows.set(j.id, r);
      return r;
    }));
    if (items.length === 0) list.append(h('li', { class: 'empty' }, 'No jobs match.'));
    summary.textContent = `${items.length} of ${total} job${total === 1 ? '' : 's'} shown`;
    more.hidden = !nextCursor;
  }

  function updateRow(id: string): void {
    const job = jobs.get(id);
    const old = rows.get(id);
    if (!job || !old) return;
    // Keep keyboard focus where it was when a row is redrawn.
    const focusedAction = old.contains(document.activeElement) ? (document.activeElement as HTMLElement).dataset.action : undefined;
    const r = row(job);
    old.replaceWith(r);
    rows.set(id, r);
    if (focusedAction) (r.querySelector(`[data-action="${focusedAction}"]`) as HTMLElement | null)?.focus();
  }

  function updateProgressOnly(id: string): void {
    const job = jobs.get(id);
    const r = rows.get(id);
    if (!job || !r) return;
    r.querySelector('.progress-wrap')?.replaceWith(progressBar(job));
  }

  function removeRow(id: string): void {
    if (!jobs.delete(id)) return;
    order = order.filter((x) => x !== id);
    total = Math.max(0, total - 1);
    renderRows();
    void live.setSubscriptions(order);
  }

  async function load(append = false): Promise<void> {
    const seq = ++loadSeq;
    try {
      const res = await api.listJobs({ status: statusSel.value || undefined, search: search.value.trim() || undefined, cursor: append ? nextCursor : null });
      if (seq !== loadSeq) return;
      if (!append) {
        jobs.clear();
        order = [];
      }
      for (const j of res.items) {
        if (!jobs.has(j.id)) order.push(j.id);
        jobs.set(j.id, j);
      }
      nextCursor = res.nextCursor;
      total = res.total;
      renderRows();
      await live.setSubscriptions(order);
    } catch (ex) {
      if (seq === loadSeq) notify('error', 'Could not load the jobs:', ex instanceof ApiError ? ex.describe() : String(ex));
    }
  }

  const pendingRefresh = new Map<string, ReturnType<typeof setTimeout>>();
  const refreshJob = (id: string) => {
    clearTimeout(pendingRefresh.get(id));
    pendingRefresh.set(id, setTimeout(() => void refreshNow(id), 300));
  };
  const refreshNow = async (id: string) => {
    pendingRefresh.delete(id);
    if (!jobs.has(id) || deleting.has(id)) return;
    try {
      const d = await api.getJob(id);
      if (jobs.has(id)) {
        jobs.set(id, d.job);
        updateRow(id);
      }
    } catch {
      // Gone meanwhile: job_removed takes care of it.
    }
  };
  const reloadSoon = debounce(() => void load(), 250);
  const off = live.on({
    progress: (e) => {
      const job = jobs.get(e.jobId);
      if (!job) return;
      applyProgress(job, e);
      updateProgressOnly(e.jobId);
    },
    state_change: (e) => {
      const job = jobs.get(e.jobId);
      if (!job) return;
      applyState(job, e);
      updateRow(e.jobId);
      refreshJob(e.jobId);
    },
    job_added: (e) => {
      if (!jobs.has(e.jobId)) reloadSoon();
    },
    job_removed: (e) => removeRow(e.jobId),
  });
  const offDel = onDeleting((id) => deleting.add(id));
  const offRe = live.onReconnect(() => void load());

  main.replaceChildren(
    h('h1', { class: 'visually-hidden' }, 'Jobs'),
    form,
    h('section', { class: 'card', 'aria-labelledby': 'jobs-title' }, h('h2', { id: 'jobs-title' }, 'Jobs'), filters, summary, list, more),
  );
  void load();
  return () => {
    off();
    offRe();
    offDel();
    for (const t of pendingRefresh.values()) clearTimeout(t);
  };
}

// ---------- job page ----------
function renderJobPage(id: string): () => void {
  let detail: JobDetail | null = null;
  let lastId = 0; // last contiguous job_events id loaded
  let caughtUp = false;
  let catching = false;
  let level = '';
  let disposed = false;
  const offDel = onDeleting((jobId) => {
    if (jobId === id) disposed = true;
  });
  const head = h('section', { class: 'card', 'aria-labelledby': 'job-title' }, h('p', {}, 'Loading…'));
  const mediaBox = h('section', { class: 'card', 'aria-labelledby': 'media-title' });
  const eventsList = h('ol', { class: 'events', id: 'events', 'aria-label': 'Event history' });
  const moreEvents = h('button', { type: 'button', class: 'secondary', hidden: true, onclick: () => void loadEvents(false) }, 'Load more events');
  const levelSel = h('select', { id: 'level', name: 'level' }, h('option', { value: '' }, 'all'), ...['debug', 'info', 'warn', 'error'].map((l) => h('option', { value: l }, l)));
  levelSel.addEventListener('change', () => {
    level = levelSel.value;
    lastId = 0;
    eventsList.replaceChildren();
    void loadEvents(false);
  });

  function renderHead(): void {
    if (!detail) return;
    const job = detail.job;
    const output = job.outputPath
      ? h(
          'div',
          { class: 'output', 'data-testid': 'output' },
          h('h3', {}, 'Finished file'),
          h('code', {}, job.outputPath),
          h('p', { class: 'hint' }, 'The path is relative to the server’s media directory (MEDIA_ROOT). The API has no file-download route yet, so fetch the file from there.'),
        )
      : null;
    head.replaceChildren(
      h('p', {}, h('a', { href: '#/' }, '← All jobs')),
      h('h1', { id: 'job-title', class: 'job-title' }, job.url),
      h('div', { class: 'job-head' }, statusBadge(job), h('span', { class: 'muted' }, `id ${job.id}`)),
      progressBar(job),
      h(
        'dl',
        { class: 'props' },
        ...prop('Dubbing', job.requestedDubbing ? `yes → ${job.targetLang}` : 'no'),
        ...prop('Format', job.formatPreset),
        ...prop('Container', job.outputContainer),
        ...prop('Attempt', `${job.attempt} (generation ${job.generation})`),
        ...prop('Created', fmtTime(job.createdAt)),
        ...prop('Updated', fmtTime(job.updatedAt)),
        ...(job.holdReason ? prop('Held', job.holdReason) : []),
        ...(job.error ? prop('Error', `${job.error.message} [${job.error.code}]${job.failedStage ? ` in ${job.failedStage}` : ''}`) : []),
      ),
      ...(output ? [output] : []),
      actionButtons(job, (op) => {
        if (op === 'delete') location.hash = '#/';
        else void refresh();
      }),
    );
  }

  function renderMedia(media: Media[]): void {
    mediaBox.replaceChildren(h('h2', { id: 'media-title' }, 'Media'));
    if (media.length === 0) {
      mediaBox.append(h('p', { class: 'muted' }, 'No media yet.'));
      return;
    }
    mediaBox.append(
      h(
        'div',
        { class: 'table-scroll', tabindex: 0, role: 'region', 'aria-label': 'Media files' },
        h(
          'table',
          {},
          h('thead', {}, h('tr', {}, ...['Kind', 'Title', 'Path', 'Size', 'Duration', 'Resolution', 'Codecs', 'Language'].map((t) => h('th', { scope: 'col' }, t)))),
          h(
            'tbody',
            {},
            ...media.map((m) =>
              h(
                'tr',
                {},
                h('td', {}, m.kind),
                h('td', {}, m.title ?? '–'),
                h('td', {}, h('code', {}, m.path)),
                h('td', {}, fmtBytes(m.sizeBytes)),
                h('td', {}, fmtSeconds(m.durationSec)),
                h('td', {}, m.width && m.height ? `${m.width}×${m.height}` : '–'),
                h('td', {}, [m.videoCodec, m.audioCodec].filter(Boolean).join(' / ') || '–'),
                h('td', {}, m.language ?? '–'),
              ),
            ),
          ),
        ),
      ),
    );
  }

  function eventItem(e: JobEventRecord): HTMLElement {
    return h(
      'li',
      { class: `event level-${e.level}`, 'data-event-id': e.id },
      h('time', { datetime: e.createdAt }, fmtTime(e.createdAt)),
      h('span', { class: 'ev-type' }, `${e.type}${e.level !== 'info' ? ` · ${e.level}` : ''}`),
      h('span', { class: 'ev-msg' }, e.message),
    );
  }

  /** Fetch events after the last contiguous id: one page (button) or until caught up (live). */
  async function loadEvents(untilEnd: boolean): Promise<void> {
    if (catching || disposed) return;
    catching = true;
    try {
      for (let page = 0; page < (untilEnd ? 20 : 1); page++) {
        const r = await api.logs(id, lastId, 50, level || undefined);
        for (const e of r.items) {
          if (e.id <= lastId) continue;
          eventsList.append(eventItem(e));
          lastId = e.id;
        }
        caughtUp = r.nextAfter === null;
        if (r.nextAfter !== null) lastId = Math.max(lastId, r.nextAfter);
        if (caughtUp) break;
      }
      moreEvents.hidden = caughtUp;
      if (!eventsList.children.length) eventsList.append(h('li', { class: 'empty' }, 'No events.'));
      else eventsList.querySelector('.empty')?.remove();
    } catch (ex) {
      notify('error', 'Could not load the events:', ex instanceof ApiError ? ex.describe() : String(ex));
    } finally {
      catching = false;
    }
  }

  async function refresh(): Promise<void> {
    if (disposed) return;
    try {
      detail = await api.getJob(id);
      renderHead();
      renderMedia(detail.media);
    } catch (ex) {
      if (ex instanceof ApiError && ex.status === 404) {
        head.replaceChildren(h('p', {}, h('a', { href: '#/' }, '← All jobs')), h('h1', { id: 'job-title' }, 'Job not found'), h('p', {}, 'It was deleted, or it is not yours.'));
        mediaBox.replaceChildren();
        return;
      }
      notify('error', 'Could not load the job:', ex instanceof ApiError ? ex.describe() : String(ex));
    }
  }
  const refreshSoon = debounce(() => void refresh(), 200);
  const catchUpSoon = debounce(() => {
    if (caughtUp) void loadEvents(true);
  }, 200);

  const off = live.on({
    progress: (e) => {
      if (e.jobId !== id || !detail) return;
      applyProgress(detail.job, e);
      head.querySelector('.progress-wrap')?.replaceWith(progressBar(detail.job));
    },
    state_change: (e) => {
      if (e.jobId !== id) return;
      if (detail) {
        applyState(detail.job, e);
        renderHead();
      }
      refreshSoon();
      catchUpSoon();
    },
    log: (e) => {
      if (e.jobId === id) catchUpSoon();
    },
    error: (e) => {
      if (e.jobId === id) catchUpSoon();
    },
    job_removed: (e) => {
      if (e.jobId === id) {
        notify('info', 'This job was deleted.');
        location.hash = '#/';
      }
    },
  });
  const offRe = live.onReconnect(() => {
    void refresh();
    void loadEvents(true);
  });

  main.replaceChildren(
    head,
    mediaBox,
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'events-title' },
      h('h2', { id: 'events-title' }, 'Events and logs'),
      h('div', { class: 'field inline' }, h('label', { for: 'level' }, 'Level'), levelSel),
      eventsList,
      moreEvents,
    ),
  );
  void live.setSubscriptions([id]);
  void refresh().then(() => loadEvents(false));
  return () => {
    disposed = true;
    off();
    offRe();
    offDel();
  };
}

function prop(k: string, v: string): HTMLElement[] {
  return [h('dt', {}, k), h('dd', {}, v)];
}

// ---------- routing ----------
function route(): void {
  if (!user) return;
  cleanup();
  const m = /^#\/jobs\/([A-Za-z0-9_-]+)$/.exec(location.hash);
  cleanup = m ? renderJobPage(m[1]!) : renderDashboard();
  main.focus({ preventScroll: true });
}
window.addEventListener('hashchange', route);

async function boot(): Promise<void> {
  // Only ask for the session when this browser logged in before, so a first visit makes no 401.
  if (localStorage.getItem(HINT)) {
    try {
      signedIn(await api.session());
      return;
    } catch {
      localStorage.removeItem(HINT);
    }
  }
  renderLogin();
}
void boot();
