// App Service authentication ("Easy Auth") with Microsoft Entra ID in front of the Function App.
//
// Why: the approval endpoints must know *who* approves. Easy Auth validates the caller's Entra
// token before the request reaches the app and passes the caller on as the X-MS-CLIENT-PRINCIPAL
// header (base64 JSON of the token's claims) plus X-MS-CLIENT-PRINCIPAL-ID / -NAME / -IDP. Only
// while authentication is enabled does the platform replace whatever a client sent under these
// names, so the app trusts them only when App Service reports authentication on
// (WEBSITE_AUTH_ENABLED=True, triggers/identity.py), and identifies approvers by oid/tid or UPN.
// main.bicep therefore requires this module whenever a ring of the deployed plan has manual
// approval; the local approver header fallback is off in Azure (app-settings.json).
//
// No path is excluded: every request (the /api routes, the Durable and Event Grid runtime
// webhooks) needs a valid Entra token for this app registration, and the /api routes a function
// key as well. Event Grid delivers ring events with its own Entra token as a WebHook to
// /api/events (ring-events.bicep), so it needs no exclusion either.
//
// Authorization (defaultAuthorizationPolicy, learn.microsoft.com/azure/app-service/
// configure-authentication-provider-aad#use-a-built-in-authorization-policy): a valid token is not
// enough, or every principal of the tenant could call the API. allowedApplications checks the
// token's appid/azp claim (the Azure CLI for people, Event Grid's application for deliveries);
// allowedPrincipals passes when the token's oid is one of the identities OR one of its groups is
// allowed; both checks must pass (logical AND). Requests that fail get 403. main.bicep refuses to
// deploy authentication with no allowed principals.

@description('Name of the existing Function App.')
param functionAppName string

@description('Application (client) id of the Entra app registration that represents the PatchRings API.')
param clientId string

@description('Audiences accepted in tokens; defaults to api://<clientId> and the bare client id.')
param allowedAudiences array = []

@description('Object ids (oid claim) of the users and service principals allowed to call the app.')
param allowedPrincipalIds array = []

@description('Object ids of the groups whose members may call the app (groups claim).')
param allowedGroupIds array = []

@description('Client ids (appid / azp claim) of the applications whose tokens are accepted.')
@minLength(1)
param allowedApplications array

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource auth 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
      runtimeVersion: '~1'
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: clientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: empty(allowedAudiences) ? [
            'api://${clientId}'
            clientId
          ] : allowedAudiences
          defaultAuthorizationPolicy: {
            allowedApplications: allowedApplications
            allowedPrincipals: {
              identities: empty(allowedPrincipalIds) ? null : allowedPrincipalIds
              groups: empty(allowedGroupIds) ? null : allowedGroupIds
            }
          }
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
    httpSettings: {
      requireHttps: true
      forwardProxy: {
        convention: 'NoProxy'
      }
    }
  }
}
