import django.db.models.deletion
import tests.shop.models
import uuid
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('conversations', '0002_message_client_operation_id'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='Order',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('total', models.DecimalField(decimal_places=2, max_digits=12)),
                ('big', models.BigIntegerField(default=0)),
                ('duration', models.DurationField(blank=True, null=True)),
                ('reference', models.UUIDField(default=uuid.uuid4)),
                ('status', models.CharField(choices=[('open', 'open'), ('paid', 'paid'), ('shipped', 'shipped')], default='open', max_length=20)),
                ('owner', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='shop_orders', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['id'],
            },
        ),
        migrations.CreateModel(
            name='Ticket',
            fields=[
                ('code', models.CharField(default=tests.shop.models.new_ticket_code, max_length=20, primary_key=True, serialize=False)),
                ('subject', models.CharField(max_length=200)),
                ('order', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='tickets', to='shop.order')),
                ('session', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='shop_tickets', to='conversations.conversationsession')),
            ],
            options={
                'ordering': ['code'],
            },
        ),
    ]
