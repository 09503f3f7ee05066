/**
 * Notebooks across kernel lifetimes, in JupyterLab:
 *
 * - on save of a notebook whose kernel is an envmgr kernel, write
 *   `metadata.envmgr = {family, build, release?, v}`; the build is what the
 *   running kernel says (`ENVMGR_BUILD_ID`, exported by envmgr's launcher),
 *   asked once per kernel with a silent `user_expressions` request.
 *   `metadata.kernelspec` is never touched.
 * - on opening or switching to a notebook whose kernel ends support within
 *   the notice period (setting `noticeDays`, 90 by default; a site sets it in
 *   overrides.json), or whose kernel was retired, a notification with the
 *   date and a "Switch to <successor>" action.
 *
 * Retired releases come from `envmgr-retired.json`, which envmgr writes into
 * every kernelspec of a family and jupyter_server serves with the
 * kernelspec's files: no server extension needed.
 */

import type {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import type { ISessionContext } from '@jupyterlab/apputils';
import { Notification } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import type { NotebookPanel } from '@jupyterlab/notebook';
import type { Kernel, KernelSpec } from '@jupyterlab/services';
import { ServerConnection } from '@jupyterlab/services';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { envmgrKernel } from './metadata';
import type { IRetired, ISupportNotice, KernelMetadataByName } from './support';
import {
  buildIdExpression,
  DEFAULT_NOTICE_DAYS,
  notebookBlock,
  parseBuildId,
  parseRetired,
  retiredSources,
  supportNotice
} from './support';

const PLUGIN_ID = 'envmgr-launcher:lifecycle';
const RETIRED_FILE = 'envmgr-retired.json';

/** Settings shared with the Select Kernel dialog (kerneldialog.ts). */
export const lifecycleSettings = { noticeDays: DEFAULT_NOTICE_DAYS };

export const lifecyclePlugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'Records the build a notebook ran on; announces the end of support of its kernel.',
  requires: [INotebookTracker],
  optional: [ISettingRegistry],
  autoStart: true,
  activate: (
    _app: JupyterFrontEnd,
    tracker: INotebookTracker,
    settings: ISettingRegistry | null
  ) => {
    if (settings) {
      void settings.load(PLUGIN_ID).then(s => {
        const read = () => {
          const days = s.get('noticeDays').composite;
          lifecycleSettings.noticeDays =
            typeof days === 'number' && days >= 0 ? days : DEFAULT_NOTICE_DAYS;
        };
        read();
        s.changed.connect(read);
      });
    }
    const builds = new BuildIds();
    tracker.widgetAdded.connect((_, panel) => watch(panel, builds));
    tracker.currentChanged.connect((_, panel) => {
      if (panel) {
        void panel.sessionContext.ready.then(() => announce(panel.sessionContext));
      }
    });
  }
};

/**
 * The build each running kernel reported, by kernel id: asked once per kernel
 * start (a restart of a `latest` kernel can land on a newer build, so a
 * restart forgets the answer). A kernel that does not answer is not asked
 * again until its next start, so cells never pay for it.
 */
class BuildIds {
  ask(kernel: Kernel.IKernelConnection): void {
    if (!this._asked.has(kernel.id)) {
      this._asked.add(kernel.id);
      const started = ++this._generation;
      this._starts.set(kernel.id, started);
      void askBuildId(kernel).then(id => {
        if (id && this._starts.get(kernel.id) === started) {
          this._known.set(kernel.id, id);
        }
      });
    }
  }

  forget(kernel: Kernel.IKernelConnection): void {
    this._asked.delete(kernel.id);
    this._known.delete(kernel.id);
    this._starts.delete(kernel.id);
  }

  known(kernel: Kernel.IKernelConnection): string | null {
    return this._known.get(kernel.id) ?? null;
  }

  private _asked = new Set<string>();
  private _known = new Map<string, string>();
  private _starts = new Map<string, number>();
  private _generation = 0;
}

async function askBuildId(kernel: Kernel.IKernelConnection): Promise<string | null> {
  try {
    const spec = await kernel.spec;
    const future = kernel.requestExecute(
      {
        code: '',
        silent: true,
        store_history: false,
        user_expressions: { envmgr: buildIdExpression(spec?.language) }
      },
      true
    );
    const reply = await future.done;
    const content = reply.content as {
      status: string;
      user_expressions?: Record<string, { data?: Record<string, unknown> }>;
    };
    return parseBuildId(content.user_expressions?.['envmgr']?.data?.['text/plain']);
  } catch {
    return null;
  }
}

const RESTARTING: ReadonlySet<string> = new Set(['starting', 'restarting', 'autorestarting']);

function watch(panel: NotebookPanel, builds: BuildIds): void {
  const session = panel.sessionContext;
  session.statusChanged.connect((_, status) => {
    const kernel = session.session?.kernel;
    if (!kernel) {
      return;
    }
    if (RESTARTING.has(status)) {
      builds.forget(kernel);
    } else if (status === 'idle' && isEnvmgrKernel(session, kernel.name)) {
      builds.ask(kernel);
    }
  });
  panel.context.saveState.connect((_, state) => {
    if (state === 'started') {
      stamp(panel, builds);
    }
  });
  void session.ready.then(() => announce(session));
}

function isEnvmgrKernel(session: ISessionContext, name: string): boolean {
  return envmgrKernel(session.specsManager.specs?.kernelspecs[name]?.metadata) !== null;
}

/** Write `metadata.envmgr` before the model is serialised (saveState 'started' is synchronous). */
function stamp(panel: NotebookPanel, builds: BuildIds): void {
  const kernel = panel.sessionContext.session?.kernel;
  const specs = panel.sessionContext.specsManager.specs;
  if (!kernel || !specs) {
    return;
  }
  const meta = envmgrKernel(specs.kernelspecs[kernel.name]?.metadata);
  const build = builds.known(kernel);
  const model = panel.context.model;
  if (!meta || !build) {
    return;
  }
  const block = notebookBlock(meta, build, model.getMetadata('envmgr'));
  if (JSON.stringify(model.getMetadata('envmgr')) !== JSON.stringify(block)) {
    model.setMetadata('envmgr', block);
  }
}

// -- notices -------------------------------------------------------------------

const shown = new Set<string>();
let retiredCache: { specs: KernelSpec.ISpecModels; entries: Promise<Map<string, IRetired>> } | null =
  null;

function metadataByName(specs: KernelSpec.ISpecModels | null): KernelMetadataByName {
  const out: KernelMetadataByName = {};
  for (const [name, spec] of Object.entries(specs?.kernelspecs ?? {})) {
    out[name] = spec?.metadata;
  }
  return out;
}

/** Every family's retired releases (one request per family, cached per kernelspec listing). */
export function retiredKernels(
  specs: KernelSpec.ISpecModels | null
): Promise<Map<string, IRetired>> {
  if (!specs) {
    return Promise.resolve(new Map());
  }
  if (retiredCache?.specs !== specs) {
    retiredCache = { specs, entries: fetchRetired(metadataByName(specs)) };
  }
  return retiredCache.entries;
}

async function fetchRetired(specs: KernelMetadataByName): Promise<Map<string, IRetired>> {
  const settings = ServerConnection.makeSettings();
  const found = new Map<string, IRetired>();
  await Promise.all(
    retiredSources(specs).map(async name => {
      const url = `${settings.baseUrl}kernelspecs/${encodeURIComponent(name)}/${RETIRED_FILE}`;
      try {
        const response = await ServerConnection.makeRequest(url, {}, settings);
        if (response.ok) {
          for (const entry of parseRetired(await response.json())) {
            found.set(entry.kernel, entry);
          }
        }
      } catch {
        // an older envmgr wrote no such file: nothing is retired
      }
    })
  );
  return found;
}

/** The notice for a session's kernel (running or preferred), or null. */
export async function noticeFor(session: ISessionContext): Promise<ISupportNotice | null> {
  await session.specsManager.ready;
  const specs = session.specsManager.specs;
  const name = session.session?.kernel?.name ?? session.kernelPreference.name;
  const retired = await retiredKernels(specs);
  return supportNotice(name, metadataByName(specs), retired, new Date(), lifecycleSettings.noticeDays);
}

/**
 * Show the notice of a session's kernel once per document and kernel.
 *
 * @returns whether a notice applies (shown now or before).
 */
export async function announce(session: ISessionContext): Promise<boolean> {
  if (session.isDisposed) {
    return false;
  }
  const notice = await noticeFor(session);
  if (!notice) {
    return false;
  }
  const key = `${session.path}\n${notice.kernel}`;
  if (!shown.has(key)) {
    shown.add(key);
    showNotice(session, notice);
  }
  return true;
}

function noticeText(n: ISupportNotice): string {
  if (n.kind === 'retired') {
    return `Kernel ${n.kernel} (release ${n.release}) was retired on ${n.date}.`;
  }
  if (n.kind === 'expired') {
    return `Support for kernel ${n.kernel} (release ${n.release}) ended on ${n.date}.`;
  }
  const days = n.daysLeft === 1 ? '1 day' : `${n.daysLeft} days`;
  return `Kernel ${n.kernel} (release ${n.release}) is supported until ${n.date} (${days} left).`;
}

function showNotice(session: ISessionContext, notice: ISupportNotice): void {
  const successor = notice.successor;
  const message = successor
    ? `${noticeText(notice)} Its successor is ${successor.displayName}.`
    : noticeText(notice);
  Notification.warning(message, {
    autoClose: false,
    actions: successor
      ? [
          {
            label: `Switch to ${successor.displayName}`,
            caption: `Use kernel ${successor.name} for this notebook`,
            displayType: 'accent',
            callback: () => {
              void session.changeKernel({ name: successor.name });
            }
          }
        ]
      : []
  });
}
