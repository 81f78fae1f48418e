#!/usr/bin/env bash
# curl calls from Kong's Admin API documentation (getting-started guide, key-auth, acl,
# rate-limiting, load balancing), run unchanged against pilotfish's Kong Admin API.
# Each call is preceded by "# expect STATUS [field,...]": the status Kong answers and fields its
# JSON answer has (tests/e2e/test_kong_admin_e2e.py checks both). Run by hand:
#   KONG_ADMIN=http://localhost:8001 examples/kong/admin-api.sh
set -u
KONG_ADMIN=${KONG_ADMIN:-http://localhost:8001}

# expect 201 id,username,custom_id,created_at,tags
curl -s -X POST "$KONG_ADMIN/consumers" --data username=alice --data custom_id=alice-1
# expect 409 message,name,code
curl -s -X POST "$KONG_ADMIN/consumers" --data username=alice
# expect 201 id,username,created_at
curl -s -X POST "$KONG_ADMIN/consumers" -H "Content-Type: application/json" --data '{"username": "bob", "tags": ["silver"]}'
# expect 200 id,username,custom_id
curl -s -X GET "$KONG_ADMIN/consumers/alice"
# expect 200 data,next
curl -s -X GET "$KONG_ADMIN/consumers?size=1"
# expect 201 id,key,consumer,created_at
curl -s -X POST "$KONG_ADMIN/consumers/alice/key-auth" --data key=alice-secret-key
# expect 409 message
curl -s -X POST "$KONG_ADMIN/consumers/bob/key-auth" --data key=alice-secret-key
# expect 201 id,key,consumer
curl -s -X POST "$KONG_ADMIN/consumers/bob/key-auth"
# expect 200 data
curl -s -X GET "$KONG_ADMIN/consumers/alice/key-auth"
# expect 201 id,username,consumer
curl -s -X POST "$KONG_ADMIN/consumers/alice/basic-auth" --data "username=Aladdin" --data "password=OpenSesame"
# expect 201 id,key,secret,algorithm,consumer
curl -s -X POST "$KONG_ADMIN/consumers/alice/jwt" -H "Content-Type: application/x-www-form-urlencoded"
# expect 201 id,group,consumer
curl -s -X POST "$KONG_ADMIN/consumers/alice/acls" --data "group=gold"
# expect 201 id,name,config,enabled,protocols,created_at
curl -s -X POST "$KONG_ADMIN/plugins" --data "name=key-auth" --data "config.key_names=apikey"
# expect 201 id,name,config
curl -s -X POST "$KONG_ADMIN/plugins" --data "name=acl" --data "config.allow=gold" --data "config.hide_groups_header=true"
# expect 201 id,name,config,consumer
curl -s -X POST "$KONG_ADMIN/consumers/bob/plugins" --data "name=rate-limiting" --data "config.minute=5" --data "config.policy=local"
# expect 400 message,name,fields
curl -s -X POST "$KONG_ADMIN/plugins" --data "name=rate-limiting" --data "config.policy=local"
# expect 200 data,next
curl -s -X GET "$KONG_ADMIN/plugins"
# expect 201 id,name,algorithm,hash_on,slots,created_at
curl -s -X POST "$KONG_ADMIN/upstreams" --data name=example_upstream
# expect 409 message
curl -s -X POST "$KONG_ADMIN/upstreams" --data name=example_upstream
# expect 200 id,name,algorithm,hash_on,hash_on_header
curl -s -X PATCH "$KONG_ADMIN/upstreams/example_upstream" --data algorithm=consistent-hashing --data hash_on=header --data hash_on_header=x-user
# expect 201 id,target,weight,upstream,created_at
curl -s -X POST "$KONG_ADMIN/upstreams/example_upstream/targets" --data target=10.1.0.1:80 --data weight=100
# expect 201 id,target,weight
curl -s -X POST "$KONG_ADMIN/upstreams/example_upstream/targets" --data target=10.1.0.2:80 --data weight=0
# expect 200 data
curl -s -X GET "$KONG_ADMIN/upstreams/example_upstream/targets"
# expect 204
curl -s -X PUT "$KONG_ADMIN/upstreams/example_upstream/targets/10.1.0.1:80/unhealthy"
# expect 204
curl -s -X PUT "$KONG_ADMIN/upstreams/example_upstream/targets/10.1.0.1:80/healthy"
# expect 204
curl -s -X DELETE "$KONG_ADMIN/upstreams/example_upstream/targets/10.1.0.2:80"
# expect 404 message
curl -s -X GET "$KONG_ADMIN/consumers/nobody"
# expect 204
curl -s -X DELETE "$KONG_ADMIN/consumers/bob"
