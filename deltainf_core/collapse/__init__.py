"""Influence collapse: transformed, relabelled query copies and the flagging rules."""
