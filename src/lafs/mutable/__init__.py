"""lafs.mutable"""
