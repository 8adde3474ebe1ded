"""Text-to-image on the box: a Stable-Diffusion-architecture pipeline over ONNX engines, without torch."""
