"""Building blocks that two or more reference agents share."""
