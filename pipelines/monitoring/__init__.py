"""The monitoring stage: a day's scored output judged per segment against the champion's reference
distribution and the previous day (drift, volume, rejections)."""
