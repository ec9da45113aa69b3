"""The AI SDK endpoints, included by the app's ``urls.py`` under ``ai-sdk/`` (docs/ai-sdk.md)."""

from django.urls import URLPattern, path

from . import views

urlpatterns: list[URLPattern] = [
    path("chat/", views.ChatView.as_view(), name="ai-sdk-chat"),
    path("chat", views.ChatView.as_view()),
    path("chat/<str:session_id>/stream/", views.ChatStreamView.as_view(), name="ai-sdk-chat-stream"),
    path("chat/<str:session_id>/stream", views.ChatStreamView.as_view()),
    path("chat/<str:session_id>/messages/", views.ChatMessagesView.as_view(), name="ai-sdk-chat-messages"),
    path("chat/<str:session_id>/messages", views.ChatMessagesView.as_view()),
]
