"""lafs.web"""
