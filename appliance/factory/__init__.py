"""The factory half: box spec -> sources -> ONNX -> parity -> SKU tuning -> signed store.

Needs the ``build`` extra (torch, transformers, onnx, the exporter); the box never imports this.
"""
