from django.urls import path

from labeling import views

urlpatterns = [
    path("", views.label, name="label"),
    path("review/", views.review, name="label-review"),
    path("datasets/", views.datasets, name="label-datasets"),
]
