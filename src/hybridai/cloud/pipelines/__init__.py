"""Training pipelines: train on lake data, export ONNX, edge variants, calibration, retraining."""
