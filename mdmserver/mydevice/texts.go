package mydevice

import "strings"

// texts are the page's own words; the reasons' words are the remediation catalog's.
type texts struct {
	Heading, Allowed, InGrace, Deadline, Denied, GraceEnded, BreakGlassOn, Until string
	CheckAgain, EmergencyTitle, EmergencyText, Reason, EmergencyButton, Help     string
	Checked, Asked, CheckFailed, BreakGlassStarted, Refused                      string
	RefusedWhy                                                                   map[string]string
}

// notice is the sentence for a redirect's outcome (noticeOf's values).
func (t texts) notice(done string) string {
	switch {
	case done == "checked":
		return t.Checked
	case done == "asked":
		return t.Asked
	case done == "check-failed":
		return t.CheckFailed
	case done == "break-glass":
		return t.BreakGlassStarted
	case strings.HasPrefix(done, "refused:"):
		if why, ok := t.RefusedWhy[strings.TrimPrefix(done, "refused:")]; ok {
			return t.Refused + " " + why
		}
		return t.Refused
	}
	return ""
}

var pageTexts = map[string]texts{
	"en": {
		Heading: "My device", Allowed: "This device may open clinical messaging.",
		InGrace: "Fix this device soon: it will be blocked.", Deadline: "Blocked from", Denied: "This device may not open clinical messaging.",
		GraceEnded: "The time to fix it ended", BreakGlassOn: "Emergency access is open.", Until: "Until",
		CheckAgain: "Check again", EmergencyTitle: "Emergency access",
		EmergencyText: "If patient care cannot wait, you may open messaging on this device for a limited time. The security team is alerted and reviews every use.",
		Reason:        "Why care cannot wait", EmergencyButton: "Open emergency access", Help: "Need help? Contact",
		Checked: "Checked again with what the device last reported.", Asked: "The device was asked for a fresh report; reload this page in a minute.",
		CheckFailed: "The check did not work; try again in a minute.", BreakGlassStarted: "Emergency access is open. The security team was alerted.",
		Refused: "Emergency access was refused.",
		RefusedWhy: map[string]string{
			"break-glass-not-allowed": "The device's policy does not allow it.", "break-glass-not-overridable": "It cannot override why this device is blocked.",
			"break-glass-limit": "You have used it as often as the policy allows.", "break-glass-reason-required": "Say why, in at least 10 characters.",
			"break-glass-active": "It is open already.", "break-glass-not-needed": "The device is not blocked.",
		},
	},
	"es": {
		Heading: "Mi dispositivo", Allowed: "Este dispositivo puede abrir la mensajería clínica.",
		InGrace: "Corrija pronto este dispositivo: será bloqueado.", Deadline: "Bloqueado a partir de", Denied: "Este dispositivo no puede abrir la mensajería clínica.",
		GraceEnded: "El plazo para corregirlo terminó", BreakGlassOn: "El acceso de emergencia está abierto.", Until: "Hasta",
		CheckAgain: "Comprobar de nuevo", EmergencyTitle: "Acceso de emergencia",
		EmergencyText: "Si la atención al paciente no puede esperar, puede abrir la mensajería en este dispositivo durante un tiempo limitado. Se avisa al equipo de seguridad, que revisa cada uso.",
		Reason:        "Por qué la atención no puede esperar", EmergencyButton: "Abrir acceso de emergencia", Help: "¿Necesita ayuda? Contacte con",
		Checked: "Se comprobó de nuevo con lo último que informó el dispositivo.", Asked: "Se pidió al dispositivo un informe nuevo; recargue esta página en un minuto.",
		CheckFailed: "La comprobación no funcionó; inténtelo en un minuto.", BreakGlassStarted: "El acceso de emergencia está abierto. Se avisó al equipo de seguridad.",
		Refused: "Se rechazó el acceso de emergencia.",
		RefusedWhy: map[string]string{
			"break-glass-not-allowed": "La política del dispositivo no lo permite.", "break-glass-not-overridable": "No puede anular el motivo del bloqueo de este dispositivo.",
			"break-glass-limit": "Ya lo ha usado tantas veces como permite la política.", "break-glass-reason-required": "Indique el motivo, con al menos 10 caracteres.",
			"break-glass-active": "Ya está abierto.", "break-glass-not-needed": "El dispositivo no está bloqueado.",
		},
	},
}
