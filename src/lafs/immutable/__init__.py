"""lafs.immutable"""
