"""The evaluation report: plots, the worst images and one self-contained HTML page."""
