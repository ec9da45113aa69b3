"""The AI SDK endpoints, included by the app's ``urls.py`` under ``ai-sdk/``."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
