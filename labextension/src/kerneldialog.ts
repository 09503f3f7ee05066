/**
 * The session dialogs plugin: `@jupyterlab/apputils-extension:sessionDialogs`
 * whose "Select Kernel" dialog lists envmgr kernels by group.
 *
 * The choices come from the stock `SessionContextDialogs.kernelOptions`; the
 * envmgr kernelspecs among them move into one option group per envmgr group
 * (each family's `latest`, then its newest stable release) followed by a
 * group of the older releases. Every kernel stays selectable.
 */

import type { JupyterFrontEndPlugin } from '@jupyterlab/application';
import type { ISessionContext } from '@jupyterlab/apputils';
import {
  Dialog,
  ISessionContextDialogs,
  SessionContextDialogs
} from '@jupyterlab/apputils';
import type { Kernel, KernelSpec } from '@jupyterlab/services';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import type { TranslationBundle } from '@jupyterlab/translation';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';
import { kernelTooltip } from './describe';
import type { IEnvmgrEntry } from './grouping';
import { groupSections } from './grouping';
import { announce, noticeFor } from './lifecycle';
import { envmgrKernel } from './metadata';

type KernelOptions = SessionContextDialogs.IKernelOptions;
type OptionGroup = KernelOptions['groups'][number];
type Option = OptionGroup['options'][number];

/**
 * Provides ISessionContextDialogs in place of the stock plugin.
 */
export const sessionDialogsPlugin: JupyterFrontEndPlugin<ISessionContextDialogs> =
  {
    id: 'envmgr-launcher:session-dialogs',
    description:
      'Provides the session context dialogs; Select Kernel lists envmgr kernels by group.',
    provides: ISessionContextDialogs,
    optional: [ITranslator, ISettingRegistry],
    autoStart: true,
    activate: (
      _app,
      translator: ITranslator | null,
      settingRegistry: ISettingRegistry | null
    ) =>
      new EnvmgrSessionDialogs({
        translator: translator ?? nullTranslator,
        settingRegistry: settingRegistry ?? null
      })
  };

/**
 * The stock session dialogs with the envmgr kernel selector.
 */
class EnvmgrSessionDialogs extends SessionContextDialogs {
  constructor(options: ISessionContext.IDialogsOptions) {
    super(options);
    this._envmgrTranslator = options.translator ?? nullTranslator;
  }

  /**
   * Select a kernel for the session (the stock dialog, other body).
   */
  async selectKernel(sessionContext: ISessionContext): Promise<void> {
    if (sessionContext.isDisposed) {
      return;
    }
    // A notebook on a retired kernel: the end-of-support notice (with its
    // "Switch to" action) instead of a bare choice, the first time only;
    // Kernel > Change Kernel afterwards opens the dialog as usual.
    if (sessionContext.hasNoKernel && !this._retiredNoticeShown.has(sessionContext)) {
      const notice = await noticeFor(sessionContext);
      if (notice?.kind === 'retired') {
        this._retiredNoticeShown.add(sessionContext);
        await announce(sessionContext);
        return;
      }
    }
    const dialog = kernelDialog(sessionContext, this._envmgrTranslator);
    const result = await dialog.launch();
    if (!sessionContext.isDisposed && result.button.accept) {
      await applyChoice(sessionContext, result);
    }
  }

  private _envmgrTranslator: ITranslator;
  private _retiredNoticeShown = new WeakSet<ISessionContext>();
}

function kernelDialog(
  sessionContext: ISessionContext,
  translator: ITranslator
): Dialog<Kernel.IModel | null> {
  const trans = translator.load('jupyterlab');
  const autoStartDefault = sessionContext.kernelPreference.autoStartDefault;
  return new Dialog({
    title: trans.__('Select Kernel'),
    body: new KernelSelector(sessionContext, translator),
    buttons: [
      Dialog.cancelButton({
        label: sessionContext.hasNoKernel
          ? sessionContext.kernelDisplayName
          : trans.__('Cancel')
      }),
      Dialog.okButton({
        label: trans.__('Select'),
        ariaLabel: trans.__('Select Kernel')
      })
    ],
    checkbox:
      typeof autoStartDefault === 'boolean'
        ? {
            label: trans.__('Always start the preferred kernel'),
            caption: trans.__(
              'Remember my choice and always start the preferred kernel'
            ),
            checked: autoStartDefault
          }
        : null
  });
}

/**
 * Apply an accepted choice: remember the checkbox, change or shut down.
 */
async function applyChoice(
  sessionContext: ISessionContext,
  result: Dialog.IResult<Kernel.IModel | null>
): Promise<void> {
  if (result.isChecked !== null) {
    sessionContext.kernelPreference = {
      ...sessionContext.kernelPreference,
      autoStartDefault: result.isChecked
    };
  }
  if (result.value === null && !sessionContext.hasNoKernel) {
    await sessionContext.shutdown();
  } else if (result.value) {
    await sessionContext.changeKernel(result.value);
  }
}

/**
 * The dialog body: a label and a select of the regrouped kernel options.
 */
class KernelSelector extends Widget {
  constructor(sessionContext: ISessionContext, translator: ITranslator) {
    super({ node: selectorNode(sessionContext, translator) });
  }

  getValue(): Kernel.IModel | null {
    const select = this.node.querySelector('select') as HTMLSelectElement;
    return JSON.parse(select.value) as Kernel.IModel | null;
  }
}

function selectorNode(
  sessionContext: ISessionContext,
  translator: ITranslator
): HTMLElement {
  const trans = translator.load('jupyterlab');
  const body = document.createElement('div');
  const text = document.createElement('label');
  text.textContent = `${trans.__('Select kernel for:')} "${sessionContext.name}"`;
  body.appendChild(text);

  const options = regroupKernelOptions(
    SessionContextDialogs.kernelOptions(sessionContext, translator),
    sessionContext.specsManager.specs,
    translator.load('envmgr')
  );
  const select = document.createElement('select');
  select.disabled = !!options.disabled;
  for (const group of options.groups) {
    select.appendChild(optgroupNode(group));
  }
  body.appendChild(select);
  return body;
}

function optgroupNode(group: OptionGroup): HTMLOptGroupElement {
  const optgroup = document.createElement('optgroup');
  optgroup.label = group.label;
  for (const { selected, text, title, value } of group.options) {
    const option = document.createElement('option');
    option.selected = !!selected;
    option.title = title ?? '';
    option.text = text;
    option.value = value;
    optgroup.appendChild(option);
  }
  return optgroup;
}

/**
 * Move the envmgr kernelspecs of each option group into group sections.
 */
export function regroupKernelOptions(
  options: KernelOptions,
  specs: KernelSpec.ISpecModels | null,
  trans: TranslationBundle
): KernelOptions {
  return {
    ...options,
    groups: options.groups.flatMap(group => regroup(group, specs, trans))
  };
}

interface IEnvmgrOption extends IEnvmgrEntry {
  option: Option;
}

function regroup(
  group: OptionGroup,
  specs: KernelSpec.ISpecModels | null,
  trans: TranslationBundle
): OptionGroup[] {
  const envmgr: IEnvmgrOption[] = [];
  const rest: Option[] = [];
  for (const option of group.options) {
    const entry = envmgrOption(option, specs, trans);
    if (entry) {
      envmgr.push(entry);
    } else {
      rest.push(option);
    }
  }
  if (envmgr.length === 0) {
    return [group];
  }
  const sections = groupSections(envmgr).flatMap(section => [
    { label: section.group, options: section.current.map(e => e.option) },
    {
      label: trans.__('%1: older releases', section.group),
      options: section.folded.map(e => e.option)
    }
  ]);
  return [
    ...sections.filter(g => g.options.length > 0),
    ...(rest.length > 0 ? [{ ...group, options: rest }] : [])
  ];
}

/**
 * The envmgr entry of an option starting a kernelspec; null for other
 * options (no kernel, running kernels, ordinary kernelspecs).
 */
function envmgrOption(
  option: Option,
  specs: KernelSpec.ISpecModels | null,
  trans: TranslationBundle
): IEnvmgrOption | null {
  const choice = JSON.parse(option.value) as Partial<Kernel.IModel> | null;
  const name = choice && !choice.id ? choice.name : undefined;
  const kernel = name ? envmgrKernel(specs?.kernelspecs[name]?.metadata) : null;
  if (!name || !kernel) {
    return null;
  }
  const title = kernelTooltip({ name, kernel }, trans);
  return { name, kernel, option: { ...option, title } };
}
