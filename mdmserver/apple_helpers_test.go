package mdmserver

import "github.com/halemdm/hale/mdmserver/applemdm"

// maxMDMBody is the largest MDM message /mdm reads.
const maxMDMBody = applemdm.MaxMessageBytes
