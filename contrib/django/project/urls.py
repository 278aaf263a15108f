"""URL routes of the example."""

from django.urls import path

from . import views

urlpatterns = [
    path("health", views.health),
    path("api/echo", views.echo),
]
