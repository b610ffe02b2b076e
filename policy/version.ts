/** The actionflow version written into checkpoints and ONNX metadata. */
export const VERSION = "0.1.0";
