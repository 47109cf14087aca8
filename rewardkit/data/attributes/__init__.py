"""Multi-attribute rating tables (HelpSteer style) for the regression objectives: the options and their
parsing, the table read into rated rows, and pairs derived from the ratings.
"""
