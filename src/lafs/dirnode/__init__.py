"""lafs.dirnode"""
