// Which TensorFlow.js backend a replica uses: tfjs-node-gpu when it is installed and a GPU is asked for, else
// tfjs-node when installed, else @tensorflow/tfjs on the WebAssembly backend (which installs everywhere).
import * as tf from '@tensorflow/tfjs';

export interface BackendChoice {
    /** the package that provides the backend */
    pkg: '@tensorflow/tfjs-node-gpu' | '@tensorflow/tfjs-node' | '@tensorflow/tfjs-backend-wasm';
    /** the backend name tfjs knows it by */
    backend: 'tensorflow' | 'wasm';
    /** why this is not what was asked for, if it is not */
    notice?: string;
}

export const installed = (pkg: string): boolean => {
    try {
        require.resolve(pkg);
        return true;
    }
    catch {
        return false;
    }
};

export function chooseBackend(gpus: number, has: (pkg: string) => boolean = installed): BackendChoice {
    const gpuNotice = (running: string) => gpus > 0 ? `resources.gpus=${gpus} asked for a GPU, but @tensorflow/tfjs-node-gpu is not installed; running ${running} on CPU` : undefined;
    if (gpus > 0 && has('@tensorflow/tfjs-node-gpu')) {
        return { pkg: '@tensorflow/tfjs-node-gpu', backend: 'tensorflow' };
    }
    if (has('@tensorflow/tfjs-node')) {
        return { pkg: '@tensorflow/tfjs-node', backend: 'tensorflow', notice: gpuNotice('@tensorflow/tfjs-node') };
    }
    return { pkg: '@tensorflow/tfjs-backend-wasm', backend: 'wasm', notice: gpuNotice('@tensorflow/tfjs with the wasm backend') };
}

/** Registers and selects the chosen backend. Native packages are loaded only when chosen. */
export async function activate(choice: BackendChoice): Promise<void> {
    /* c8 ignore start - tfjs-node and tfjs-node-gpu download libtensorflow when they install, so CI cannot have them */
    if (choice.backend === 'tensorflow') {
        require(choice.pkg);
    }
    /* c8 ignore stop */
    else {
        require('@tensorflow/tfjs-backend-wasm');
    }
    if (!await tf.setBackend(choice.backend)) {
        throw new Error(`TensorFlow.js backend "${choice.backend}" from ${choice.pkg} failed to initialise`);
    }
    await tf.ready();
}
