"""Dataset tools: statistics, drawings of the ground truth and conversion between formats."""
