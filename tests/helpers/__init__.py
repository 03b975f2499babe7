"""What the tests share: name-seeded weights, reference implementations, a CLI runner,
servers, and comparison of detections."""
