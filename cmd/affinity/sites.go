package main

import "github.com/affinityhq/affinity/tracker"

// parseSites returns the sites of --site with their --site-rate limits and
// --write-key secrets.
func (c *collectorFlags) parseSites() ([]tracker.Site, error) {
	sites, err := tracker.ParseSites(c.sites.values)
	if err != nil {
		return nil, err
	}
	if err := tracker.ParseSiteRates(c.siteRates.values, sites); err != nil {
		return nil, err
	}
	if err := tracker.ParseWriteKeys(c.writeKeys.values, sites); err != nil {
		return nil, err
	}
	if err := tracker.ParseRedirectOrigins(c.redirects.values, sites); err != nil {
		return nil, err
	}
	return sites, nil
}
