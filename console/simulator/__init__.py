"""The simulator: merchant traffic, notification receivers and scripted drills."""
