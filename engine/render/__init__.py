"""Turning a posed 3-D face into images: rasterizer, textures, eye attention map, compositing."""
