"""Tests that drive the real programs users point at a mount: ImageJ, CellProfiler, libtiff, GDAL..."""
