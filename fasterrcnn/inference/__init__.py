"""Inference: the :class:`Detector`, the streaming loop every command shares, per-image
:class:`Detections`, drawing, and the allocator's memory policy."""
