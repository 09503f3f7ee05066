/**
 * envmgr-launcher: JupyterLab launcher and Select Kernel dialog that group
 * envmgr kernels by their kernelspec metadata (`metadata.envmgr`).
 *
 * The package's `jupyterlab.disabledExtensions` turns off the two stock
 * plugins these replace; disabling this extension brings them back.
 */

import type { JupyterFrontEndPlugin } from '@jupyterlab/application';
import { sessionDialogsPlugin } from './kerneldialog';
import { launcherPlugin } from './launcher';
import { lifecyclePlugin } from './lifecycle';

const plugins: JupyterFrontEndPlugin<unknown>[] = [
  launcherPlugin,
  sessionDialogsPlugin,
  lifecyclePlugin
];

export default plugins;
