from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the demo login (demo / demo, a superuser so the admin can be explored)."

    def handle(self, *args, **options):
        User = get_user_model()
        user, created = User.objects.get_or_create(username="demo", defaults={"email": "demo@example.com"})
        if created or not user.is_superuser:
            user.is_staff = True
            user.is_superuser = True
            user.set_password("demo")
            user.save()
        self.stdout.write(f"Demo login {'created' if created else 'ready'}: demo / demo")
