"""The compiler, in pipeline order: loader (YAML with positions) -> validate (pydantic spec models
in spec.py, the `train:` recipe in train_config.py) -> expand (blocks, repeats, parameters;
expressions in expr/) -> infer (shapes, params, MACs into the IR of ir.py) -> codegen/emit (one
generated nn.Module source, executed) -> export/deploy (that source on disk;
TorchScript, ONNX, ExportedProgram).
guard.py bounds untrusted input; names.py and suggest.py are the naming and did-you-mean rules."""
