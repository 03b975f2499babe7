"""Old import paths, kept working: ``fasterrcnn.engine.distributed``, ``.export`` and
``.runtime`` re-export what now lives in :mod:`fasterrcnn.distributed` and
:mod:`fasterrcnn.export`. New code imports from those."""
