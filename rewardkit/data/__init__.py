"""Preference data as records: files and datasets read row by row, record shapes and rating tables turned
into `Comparison`s (every problem named by file:line), prompt-disjoint splits, `rewardkit data check`.
No torch here.
"""
