"""Text to token ids: rendering, tokenization and response-preserving truncation (`encoder`), compact
encoded sets built on every core (`encoded_set`, `workers`), and the tokenization cache.
"""
