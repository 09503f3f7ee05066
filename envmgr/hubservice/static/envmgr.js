// The envmgr staff page: plain DOM, no build step. Data comes from the JSON API
// (docs/hub-service.md); every request carries the XSRF token, the live log is an
// EventSource (which cannot send headers, so the token goes in its URL).
'use strict';

(() => {
  const body = document.body;
  const PREFIX = body.dataset.prefix;
  const XSRF = body.dataset.xsrf;
  const CAN_BUILD = body.dataset.canBuild === 'true';
  const $ = sel => document.querySelector(sel);
  let stream = null;
  let refreshTimer = null;

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key.startsWith('data-')) node.setAttribute(key, value);
      else if (key in node) node[key] = value;
      else node.setAttribute(key, value);
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  async function api(path, options = {}) {
    const response = await fetch(PREFIX + path, {
      credentials: 'same-origin',
      ...options,
      headers: { 'X-XSRFToken': XSRF, 'Content-Type': 'application/json', ...(options.headers || {}) }
    });
    let data = {};
    try { data = await response.json(); } catch (e) { data = { message: response.statusText }; }
    return { status: response.status, ok: response.ok, data };
  }

  function notice(text, isError = false) {
    const node = $('#notice');
    node.textContent = text;
    node.className = isError ? 'error' : '';
    node.hidden = !text;
  }

  function age(seconds) {
    if (seconds === null || seconds === undefined) return '';
    if (seconds < 90) return `${seconds} s ago`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
    if (seconds < 129600) return `${Math.round(seconds / 3600)} h ago`;
    return `${Math.round(seconds / 86400)} days ago`;
  }

  // -- the tables ---------------------------------------------------------------
  function releaseItem(r) {
    const cls = r.expired ? 'expired' : r.expiring_soon ? 'expiring' : '';
    const note = r.expired ? 'support ended' : `until ${r.until}`;
    return el('li', { class: cls, 'data-release': r.release, title: r.build_id },
      el('code', {}, r.release), ` ${note}`);
  }

  function resultCell(result) {
    if (!result) return el('td', { 'data-field': 'last-result' }, '—');
    const text = result.status + (result.when ? ` (${result.when.replace('T', ' ').replace('Z', ' UTC')})` : '');
    return el('td', { 'data-field': 'last-result', title: result.error || result.message || '' },
      el('span', { class: `status-${result.status}` }, text));
  }

  function actions(f) {
    const running = Boolean(f.running);
    const build = el('button', {
      type: 'button', class: 'primary', 'data-action': 'build', 'data-family': f.family,
      disabled: !CAN_BUILD || !f.buildable,
      title: !CAN_BUILD ? `needs the hub scope ${body.dataset.buildScope}`
        : !f.buildable ? 'no spec for this family in specs_dir' : ''
    }, running ? 'Show running build' : 'Build now');
    build.addEventListener('click', () => startBuild(f.family));
    const back = el('button', {
      type: 'button', 'data-action': 'rollback', 'data-family': f.family,
      'data-target': f.rollback_target, disabled: !CAN_BUILD || !f.rollback_target || running,
      title: f.rollback_target ? `latest -> ${f.rollback_target}` : 'no earlier good build'
    }, 'Roll back');
    back.addEventListener('click', () => rollBack(f.family, f.latest && f.latest.build_id, f.rollback_target));
    return el('td', { class: 'actions' }, build, back);
  }

  // Advisories on the family's latest and stable builds (the last `envmgr advisories check`).
  function advisoryBadge(f) {
    const found = f.advisories || [];
    if (!found.length) return null;
    const ids = [...new Set(found.map(a => a.advisory))];
    const lines = found.map(a => `${a.advisory} [${a.severity}] ${a.package} ${a.version} in ${a.roles.join(', ')}`
      + (a.fixed ? ` (fixed in ${a.fixed})` : ''));
    return el('details', { class: 'advisories', 'data-field': 'advisories' },
      el('summary', { class: 'badge advisory', title: lines.join('\n') },
        `${ids.length} ${ids.length === 1 ? 'advisory' : 'advisories'}`),
      el('ul', {}, lines.map(line => el('li', {}, line))));
  }

  function familyRow(f) {
    const latest = f.latest || {};
    return el('tr', { 'data-family': f.family, 'data-running': f.running ? 'true' : 'false' },
      el('td', {}, el('strong', {}, f.display_name), el('br'), el('code', { class: 'muted' }, f.family),
        advisoryBadge(f)),
      el('td', { 'data-field': 'latest' }, latest.build_id ? el('code', {}, latest.build_id) : '—'),
      el('td', { 'data-field': 'age', title: latest.built || latest.since || '' }, age(latest.age_seconds)),
      el('td', { class: 'num', 'data-field': 'packages' }, latest.package_count ?? ''),
      resultCell(f.last_result),
      el('td', { 'data-field': 'stable' }, f.stable.length ? el('ul', {}, f.stable.map(releaseItem)) : '—'),
      kernelsCell(f.kernels || []),
      actions(f));
  }

  // Per build with a held lease: kernels on the service's host (and whose), or another host.
  function kernelsCell(builds) {
    if (!builds.length) return el('td', { 'data-field': 'kernels' }, '—');
    return el('td', { 'data-field': 'kernels' }, el('ul', {}, builds.map(k => {
      const here = k.kernels ? `${k.kernels} (${k.users.join(', ')})` : '';
      const away = k.other_host ? 'another host' : '';
      return el('li', { 'data-build': k.build_id, 'data-kernels': String(k.kernels) },
        el('code', {}, k.build_id), ': ', [here, away].filter(Boolean).join('; ') || 'lease held');
    })));
  }

  function groupTable(group) {
    const head = ['Family', 'Latest build', 'Built', 'Packages', 'Last result', 'Stable releases',
      'Kernels', ''];
    return el('section', { 'data-group': group.group },
      el('h2', {}, group.group),
      el('table', {},
        el('thead', {}, el('tr', {}, head.map(h => el('th', {}, h)))),
        el('tbody', {}, group.families.map(familyRow))));
  }

  function renderInProgress(items) {
    const section = $('#in-progress');
    const list = section.querySelector('ul');
    list.replaceChildren(...items.map(item => {
      const watch = el('button', { type: 'button', 'data-action': 'watch', 'data-family': item.family }, 'Watch log');
      watch.addEventListener('click', () => watchRunning(item.family, item));
      return el('li', { 'data-family': item.family },
        el('strong', {}, item.family), ` by ${item.user || '?'} since ${item.since || '?'}, step ${item.step}`,
        item.build_id ? ` (build ${item.build_id})` : '', ' ', watch);
    }));
    section.hidden = items.length === 0;
  }

  async function refresh() {
    clearTimeout(refreshTimer);
    const { ok, status, data } = await api('api/state');
    if (!ok) {
      notice(`Could not load the state (${status}): ${data.message || ''}`, true);
      refreshTimer = setTimeout(refresh, 10000);
      return;
    }
    const problems = $('#problems');
    problems.replaceChildren(...data.problems.map(p => el('li', {}, p)));
    problems.hidden = data.problems.length === 0;
    renderInProgress(data.in_progress);
    const groups = data.groups.map(groupTable);
    $('#groups').replaceChildren(...(groups.length ? groups : [el('p', {}, 'No families yet.')]));
    body.dataset.loaded = data.generated;
    refreshTimer = setTimeout(refresh, data.in_progress.length ? 3000 : 15000);
  }

  // -- the job panel ---------------------------------------------------------------
  function showPanel(title, key) {
    if (stream) { stream.close(); stream = null; }
    const panel = $('#job');
    panel.hidden = false;
    panel.dataset.key = key;
    panel.dataset.state = 'running';
    panel.querySelector('[data-field=title]').textContent = title;
    panel.querySelector('[data-field=state]').textContent = 'running…';
    panel.querySelector('[data-field=summary]').textContent = '';
    $('#log').textContent = '';
    $('#diff').hidden = true;
    $('#diff tbody').replaceChildren();
    return panel;
  }

  function showDiff(diff) {
    const changes = (diff && diff.changes) || [];
    $('#diff tbody').replaceChildren(...changes.map(c => el('tr', { 'data-package': c.name, 'data-kind': c.kind },
      el('td', { class: c.kind }, c.kind), el('td', {}, c.name), el('td', {}, c.old || ''), el('td', {}, c.new || ''))));
    $('#diff').hidden = changes.length === 0;
  }

  function finishPanel(status, summary, diff) {
    const panel = $('#job');
    panel.dataset.state = 'done';
    panel.dataset.status = status || 'unknown';
    const state = panel.querySelector('[data-field=state]');
    state.textContent = status || 'ended';
    state.className = `state status-${status}`;
    panel.querySelector('[data-field=summary]').textContent = summary;
    showDiff(diff);
  }

  function follow(url, onEnd) {
    const log = $('#log');
    stream = new EventSource(`${PREFIX}${url}?_xsrf=${encodeURIComponent(XSRF)}`);
    stream.onmessage = event => {
      log.append(event.data + '\n');
      log.scrollTop = log.scrollHeight;
    };
    stream.addEventListener('end', event => {
      stream.close();
      stream = null;
      notice('');
      onEnd(JSON.parse(event.data));
      refresh();
    });
    stream.onerror = () => {
      if (stream && stream.readyState === EventSource.CLOSED) notice('The log stream was refused; reload the page.', true);
    };
  }

  function watchJob(job) {
    const panel = showPanel(`Build of ${job.family}`, `job:${job.job_id}`);
    panel.dataset.jobId = job.job_id;
    panel.dataset.family = job.family;
    follow(`api/families/${job.family}/jobs/${job.job_id}/log`, ended => {
      const o = ended.outcome || {};
      const words = { built: `New latest ${o.build_id}. Users get it when they restart their kernel.`,
        unchanged: `Unchanged: the packages equal the latest build ${o.build_id}; nothing to publish.` };
      finishPanel(o.status, [words[o.status] || o.message, o.error].filter(Boolean).join(' — '), o.diff);
    });
  }

  function watchBuildLog(family, buildId) {
    const panel = showPanel(`Build ${buildId} of ${family} (not started here)`, `build:${buildId}`);
    panel.dataset.family = family;
    follow(`api/families/${family}/builds/${buildId}/log`, rec =>
      finishPanel(rec.status, rec.error || `build ${buildId}: ${rec.status}`, null));
  }

  function watchRunning(family, running) {
    if (running.job_id) watchJob({ family, job_id: running.job_id });
    else if (running.build_id) watchBuildLog(family, running.build_id);
    else notice(`${family} is being built by ${running.user} (pid ${running.pid} on ${running.host}), ` +
      `step ${running.step}; its log appears once the build has an id.`);
  }

  async function startBuild(family) {
    notice('');
    const { status, data } = await api(`api/families/${family}/build`, { method: 'POST', body: '{}' });
    if (status === 202) {
      notice(`Build of ${family} started.`);
      watchJob(data.job);
    } else if (status === 200) {
      notice(`${family} is already being built — showing that build instead of starting another.`);
      watchRunning(family, { ...(data.holder || {}), job_id: data.job && data.job.job_id,
        user: (data.job && data.job.user) || (data.holder && data.holder.user), build_id: data.running_build });
    } else {
      notice(`Build of ${family} refused (${status}): ${data.message}`, true);
    }
    refresh();
  }

  async function rollBack(family, latest, target) {
    if (!window.confirm(`Roll back ${family}: latest ${latest} -> ${target}?\n` +
      'Running kernels stay on their build; a restart gets the older one.')) return;
    notice('');
    const { ok, status, data } = await api(`api/families/${family}/rollback`, { method: 'POST', body: '{}' });
    if (!ok) {
      notice(`Roll back of ${family} refused (${status}): ${data.message}`, true);
      return;
    }
    const panel = showPanel(`Roll back of ${family}`, `rollback:${family}`);
    panel.dataset.family = family;
    $('#log').textContent = `latest ${data.previous} -> ${data.latest}\n` +
      (data.marked_rolled_back.length ? `marked rolled back: ${data.marked_rolled_back.join(', ')}\n` : '');
    finishPanel('rolled-back', `Latest is now ${data.latest}. Users get it when they restart their kernel.`, data.diff);
    refresh();
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('[data-action=close-job]').addEventListener('click', () => {
      if (stream) { stream.close(); stream = null; }
      $('#job').hidden = true;
    });
    refresh();
  });
})();
