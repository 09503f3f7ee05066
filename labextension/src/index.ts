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

const plugins: JupyterFrontEndPlugin<unknown>[] = [
  launcherPlugin,
  sessionDialogsPlugin
];

export default plugins;
