"""HTML pages of inspection (a minimal home page for now; the inspector UI comes later)."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from inspection.models import ProductionLine
from inspection.roles import user_roles


@login_required
def home(request):
    return render(
        request,
        "home.html",
        {"roles": sorted(user_roles(request.user)), "lines": ProductionLine.objects.all()},
    )
