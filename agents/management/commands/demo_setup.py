from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Set up the demo's database: migrate, then the demo login "
        "(demo / demo, a superuser so the admin can be explored)."
    )

    def handle(self, *args, **options):
        # In this process rather than a `manage.py migrate` of its own: one start of Django less
        # before ./dev demo serves.
        call_command("migrate", interactive=False, verbosity=options["verbosity"], stdout=self.stdout)
        User = get_user_model()
        user, created = User.objects.get_or_create(username="demo", defaults={"email": "demo@example.com"})
        if created or not user.is_superuser:
            user.is_staff = True
            user.is_superuser = True
            user.set_password("demo")
            user.save()
        self.stdout.write(f"Demo login {'created' if created else 'ready'}: demo / demo")
