"""archlab.study"""
