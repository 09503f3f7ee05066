/**
 * The launcher plugin: `@jupyterlab/launcher-extension:plugin` with the
 * envmgr launcher widget.
 *
 * Commands, the ILauncher service, the launcher opened on an empty main area,
 * the palette entry and the main area add button behave as in the stock
 * plugin (JupyterLab 4.6), which this extension disables.
 */

import type {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ILabShell } from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget } from '@jupyterlab/apputils';
import type { FileBrowserModel } from '@jupyterlab/filebrowser';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { ILauncher, LauncherModel } from '@jupyterlab/launcher';
import type { TranslationBundle } from '@jupyterlab/translation';
import { ITranslator } from '@jupyterlab/translation';
import { addIcon, launcherIcon } from '@jupyterlab/ui-components';
import type { ReadonlyPartialJSONObject } from '@lumino/coreutils';
import type { DockPanel, TabBar, Widget } from '@lumino/widgets';
import { EnvmgrLauncher } from './widget';

const CREATE = 'launcher:create';

/**
 * Provides ILauncher in place of the stock launcher plugin.
 */
export const launcherPlugin: JupyterFrontEndPlugin<ILauncher> = {
  id: 'envmgr-launcher:plugin',
  description:
    'Provides the launcher tab service; groups envmgr kernels by group.',
  requires: [ITranslator],
  optional: [ILabShell, ICommandPalette, IDefaultFileBrowser],
  provides: ILauncher,
  autoStart: true,
  activate
};

interface IServices {
  app: JupyterFrontEnd;
  translator: ITranslator;
  trans: TranslationBundle;
  model: LauncherModel;
  labShell: ILabShell | null;
  defaultBrowser: IDefaultFileBrowser | null;
}

function activate(
  app: JupyterFrontEnd,
  translator: ITranslator,
  labShell: ILabShell | null,
  palette: ICommandPalette | null,
  defaultBrowser: IDefaultFileBrowser | null
): ILauncher {
  const trans = translator.load('jupyterlab');
  const model = new LauncherModel();
  const services = { app, translator, trans, model, labShell, defaultBrowser };
  addCreateCommand(services);
  if (labShell) {
    openWhenMainAreaEmpty(app, labShell, defaultBrowser);
    addMainAreaButton(app, labShell);
  }
  palette?.addItem({ command: CREATE, category: trans.__('Launcher') });
  return model;
}

function addCreateCommand(services: IServices): void {
  const { app, trans } = services;
  app.commands.addCommand(CREATE, {
    label: trans.__('New Launcher'),
    icon: args => (args.toolbar ? addIcon : undefined),
    describedBy: {
      args: {
        type: 'object',
        properties: {
          cwd: {
            type: 'string',
            description: trans.__('The current working directory')
          },
          toolbar: {
            type: 'boolean',
            description: trans.__(
              'Whether the command is executed from a toolbar'
            )
          },
          activate: {
            type: 'boolean',
            description: trans.__('Whether to activate the widget')
          },
          ref: {
            type: 'string',
            description: trans.__('The reference widget id')
          }
        }
      }
    },
    execute: args => createLauncher(services, args)
  });
}

let nextId = 0;

/**
 * Open a launcher in the main area; a widget it launches takes its place.
 */
function createLauncher(
  services: IServices,
  args: ReadonlyPartialJSONObject
): MainAreaWidget<EnvmgrLauncher> {
  const { app, translator, trans, model, labShell, defaultBrowser } = services;
  const { commands, shell } = app;
  const id = `launcher-${nextId++}`;
  const callback = (item: Widget) => {
    if (Array.from(shell.widgets('main')).includes(item)) {
      shell.add(item, 'main', { ref: id });
      launcher.dispose();
    }
  };
  const cwd = (args['cwd'] as string) ?? defaultBrowser?.model.path ?? '';
  const launcher = new EnvmgrLauncher({
    model,
    cwd,
    callback,
    commands,
    translator
  });
  launcher.title.icon = launcherIcon;
  launcher.title.label = trans.__('Launcher');

  const main = new MainAreaWidget({ content: launcher });
  // The only open tab keeps no close icon.
  main.title.closable = !!Array.from(shell.widgets('main')).length;
  main.id = id;
  shell.add(main, 'main', {
    activate: args['activate'] as boolean,
    ref: args['ref'] as string
  });
  labShell?.layoutModified.connect(() => {
    main.title.closable = Array.from(labShell.widgets('main')).length > 1;
  }, main);
  if (defaultBrowser) {
    followBrowserPath(launcher, defaultBrowser);
  }
  return main;
}

function followBrowserPath(
  launcher: EnvmgrLauncher,
  browser: IDefaultFileBrowser
): void {
  const onPathChanged = (model: FileBrowserModel) => {
    launcher.cwd = model.path;
  };
  browser.model.pathChanged.connect(onPathChanged);
  launcher.disposed.connect(() => {
    browser.model.pathChanged.disconnect(onPathChanged);
  });
}

/**
 * After restore, open a launcher whenever the main area becomes empty.
 */
function openWhenMainAreaEmpty(
  app: JupyterFrontEnd,
  labShell: ILabShell,
  defaultBrowser: IDefaultFileBrowser | null
): void {
  void Promise.all([app.restored, defaultBrowser?.model.restored]).then(() => {
    labShell.layoutModified.connect(() => {
      if (labShell.isEmpty('main')) {
        void app.commands.execute(CREATE);
      }
    });
  });
}

/**
 * The "+" button of main area tab bars opens a launcher next to the tab.
 */
function addMainAreaButton(app: JupyterFrontEnd, labShell: ILabShell): void {
  labShell.addButtonEnabled = true;
  labShell.addRequested.connect((_: DockPanel, tabBar: TabBar<Widget>) => {
    const ref =
      tabBar.currentTitle?.owner.id ||
      tabBar.titles[tabBar.titles.length - 1].owner.id;
    return app.commands.execute(CREATE, { ref });
  });
}
