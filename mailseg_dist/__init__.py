"""mailseg_dist: distributed k-means segmentation of mailing users.

Each stage is one module, named after it: readers → ingest → clean → features →
scaler → engines/ → selection → quality → profiles → recommend → export →
figures → report, wired together in pipeline.py.
"""

__version__ = "0.1.0"
