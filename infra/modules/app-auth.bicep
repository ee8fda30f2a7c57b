// App Service authentication ("Easy Auth") with Microsoft Entra ID in front of the Function App.
//
// Why: the approval endpoints must know *who* approves. Easy Auth validates the caller's Entra
// token before the request reaches the app and passes the caller on as the X-MS-CLIENT-PRINCIPAL
// header (base64 JSON of the token's claims) plus X-MS-CLIENT-PRINCIPAL-ID / -NAME / -IDP. The
// platform strips these headers from incoming requests, so a caller cannot forge them; the app
// therefore trusts them and keeps PATCHRINGS_APPROVER_HEADER_FALLBACK = false in Azure.
//
// Only Event Grid's webhook is excluded: Event Grid delivers with the extension's system key,
// not an Entra token. Every other path (the /api routes, Durable webhooks) needs a token *and*
// the function key.

@description('Name of the existing Function App.')
param functionAppName string

@description('Application (client) id of the Entra app registration that represents the PatchRings API.')
param clientId string

@description('Audiences accepted in tokens; defaults to api://<clientId> and the bare client id.')
param allowedAudiences array = []

@description('Paths served without an Entra token (still protected by keys).')
param excludedPaths array = [
  '/runtime/webhooks/eventgrid'
]

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
      excludedPaths: excludedPaths
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
