"""edgeser.export: student checkpoint -> ONNX -> int8, each step checked for parity."""
